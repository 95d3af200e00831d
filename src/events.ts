import { EventEmitter } from 'node:events';

/** Events subsystems publish for each other. One bus per server, passed in, never global. */
export interface ValveEvents {
  /** A ref changed in a hosted repository (after a push or a server-side commit). */
  'git.refUpdated': {
    repoPath: string;
    ref: string;
    before: string | null;
    after: string | null;
    pusher: string;
    /** `push`: over git smart HTTP; `server`: a commit Valve itself made. */
    source: 'push' | 'server';
  };
  /** A run's state changed (queued, running, a step finished, done). */
  'run.updated': { runId: string; appId: string };
  /** A line was appended to a run's log. */
  'run.log': { runId: string; line: RunLogLine };
  /** An environment's live state changed (deploy started, healthy, failed). */
  'deploy.updated': { appId: string; environment: string };
}

export interface RunLogLine {
  n: number;
  ts: string;
  step: string | null;
  text: string;
}

type Listener<T> = (payload: T) => void;

export class EventBus {
  private readonly emitter = new EventEmitter();

  constructor() {
    // Every SSE client subscribes; the default limit of 10 would warn under normal use.
    this.emitter.setMaxListeners(0);
  }

  emit<K extends keyof ValveEvents>(name: K, payload: ValveEvents[K]): void {
    this.emitter.emit(name, payload);
  }

  on<K extends keyof ValveEvents>(name: K, listener: Listener<ValveEvents[K]>): () => void {
    this.emitter.on(name, listener);
    return () => this.emitter.off(name, listener);
  }
}
