/**
 * The deploy subsystem's settings read from the server's environment variables:
 * `VALVE_DEPLOY_POLL_SECONDS` (how often every environment is re-checked without a push) and
 * `VALVE_LOCAL_TARGET_TEAMS` (the teams given the local target; unset: every team).
 */
import type { DeployServiceOptions } from './service.js';

/** Settings read from the server's environment: VALVE_DEPLOY_POLL_SECONDS, VALVE_LOCAL_TARGET_TEAMS. */
export function deploySettingsFromEnv(
  env: NodeJS.ProcessEnv,
): Pick<DeployServiceOptions, 'pollIntervalMs' | 'localTargetTeams'> {
  const settings: Pick<DeployServiceOptions, 'pollIntervalMs' | 'localTargetTeams'> = {};
  const poll = env.VALVE_DEPLOY_POLL_SECONDS;
  if (poll !== undefined && poll !== '') {
    const seconds = Number(poll);
    if (!Number.isFinite(seconds) || seconds <= 0)
      throw new Error(
        `environment variable VALVE_DEPLOY_POLL_SECONDS: expected a positive number, got "${poll}"`,
      );
    settings.pollIntervalMs = seconds * 1000;
  }
  const teams = env.VALVE_LOCAL_TARGET_TEAMS;
  if (teams !== undefined && teams.trim() !== '')
    settings.localTargetTeams = teams
      .split(',')
      .map((team) => team.trim())
      .filter(Boolean);
  return settings;
}
