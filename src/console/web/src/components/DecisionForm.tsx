/**
 * Approve or reject, with an optional comment: the form of a pipeline job's approval and of a
 * deploy approval alike. `onDecide` makes the API call; while it runs both buttons wait, and
 * its failure is shown under them. Test ids: `<prefix>-comment`, `-approve`, `-reject`,
 * `-error`.
 */
import { useState } from 'react';
import { ErrorNote } from './ErrorNote.js';

export type Decision = 'approve' | 'reject';

export function DecisionForm({
  testIdPrefix,
  onDecide,
}: {
  testIdPrefix: string;
  /** The comment comes trimmed ("" for none). */
  onDecide: (decision: Decision, comment: string) => Promise<void>;
}) {
  const [comment, setComment] = useState('');
  const [busy, setBusy] = useState<Decision | null>(null);
  const [error, setError] = useState<Error | null>(null);

  const decide = async (decision: Decision) => {
    setBusy(decision);
    setError(null);
    try {
      await onDecide(decision, comment.trim());
    } catch (failure) {
      setError(failure as Error);
    } finally {
      setBusy(null);
    }
  };

  // A fragment: the approval box around it lays out the comment, the buttons and the error.
  return (
    <>
      <label>
        Comment
        <textarea
          rows={2}
          value={comment}
          placeholder="Optional: why"
          onChange={(event) => setComment(event.target.value)}
          data-testid={`${testIdPrefix}-comment`}
        />
      </label>
      <div className="button-row">
        <button
          type="button"
          className="button-primary"
          disabled={busy !== null}
          onClick={() => void decide('approve')}
          data-testid={`${testIdPrefix}-approve`}
        >
          {busy === 'approve' ? 'Approving…' : 'Approve'}
        </button>
        <button
          type="button"
          className="button-danger"
          disabled={busy !== null}
          onClick={() => void decide('reject')}
          data-testid={`${testIdPrefix}-reject`}
        >
          {busy === 'reject' ? 'Rejecting…' : 'Reject'}
        </button>
      </div>
      <ErrorNote error={error} testId={`${testIdPrefix}-error`} />
    </>
  );
}
