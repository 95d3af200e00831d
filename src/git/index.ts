/** git: hosted bare repositories, smart HTTP with Valve auth, push events, server-side commits. */
export { GitService } from './service.js';
export { gitRoutes, type GitAccess } from './smart-http.js';
export {
  readFileAt,
  listFilesAt,
  readCommit,
  logCommits,
  openObjectReader,
  readBranchHead,
  resolveRef,
  runGit,
  ZERO_OID,
  type CommitInfo,
  type FileChange,
  type ObjectReader,
  type TreeFile,
} from './plumbing.js';
