/** auth: users, teams, roles, sessions and API tokens. */
export { AuthService, roles, type Role, type Principal, type TeamMembership } from './service.js';
export { authMigrations, type AuthTables } from './migrations.js';
export { authRoutes, slug } from './routes.js';
