/** An error from the API, said in its own words next to what caused it. */

export function ErrorNote({
  error,
  testId,
}: {
  error: Error | string | null | undefined;
  testId?: string;
}) {
  if (!error) return null;
  return (
    <p className="error-note" role="alert" data-testid={testId}>
      {typeof error === 'string' ? error : error.message}
    </p>
  );
}
