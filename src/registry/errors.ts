/**
 * The OCI Distribution spec's own error codes (spec.md, "Error Codes"): the spec says a JSON
 * error body MUST use one of these, so the registry keeps them apart from Valve's table in
 * src/errors.ts. Statuses follow the spec's endpoint table (and the reference registry where
 * the spec leaves a choice, e.g. 400 for MANIFEST_BLOB_UNKNOWN).
 */
export const registryErrorTable = {
  BLOB_UNKNOWN: { status: 404, message: 'blob unknown to registry' },
  BLOB_UPLOAD_INVALID: { status: 400, message: 'blob upload invalid' },
  BLOB_UPLOAD_UNKNOWN: { status: 404, message: 'blob upload unknown to registry' },
  DIGEST_INVALID: { status: 400, message: 'provided digest did not match uploaded content' },
  MANIFEST_BLOB_UNKNOWN: {
    status: 400,
    message: 'manifest references a manifest or blob unknown to registry',
  },
  MANIFEST_INVALID: { status: 400, message: 'manifest invalid' },
  MANIFEST_UNKNOWN: { status: 404, message: 'manifest unknown to registry' },
  NAME_INVALID: { status: 400, message: 'invalid repository name' },
  NAME_UNKNOWN: { status: 404, message: 'repository name not known to registry' },
  SIZE_INVALID: { status: 400, message: 'provided length did not match content length' },
  UNAUTHORIZED: { status: 401, message: 'authentication required' },
  DENIED: { status: 403, message: 'requested access to the resource is denied' },
  UNSUPPORTED: { status: 405, message: 'the operation is unsupported' },
  TOOMANYREQUESTS: { status: 429, message: 'too many requests' },
} as const;

export type RegistryErrorCode = keyof typeof registryErrorTable;

export class RegistryError extends Error {
  readonly code: RegistryErrorCode;
  readonly status: number;
  readonly detail: unknown;

  /** `status` overrides the table's only where the spec asks for another one (413, 416). */
  constructor(code: RegistryErrorCode, message?: string, detail?: unknown, status?: number) {
    super(message ?? registryErrorTable[code].message);
    this.name = 'RegistryError';
    this.code = code;
    this.status = status ?? registryErrorTable[code].status;
    this.detail = detail;
  }
}

export function isRegistryError(error: unknown, code?: RegistryErrorCode): error is RegistryError {
  return error instanceof RegistryError && (code === undefined || error.code === code);
}
