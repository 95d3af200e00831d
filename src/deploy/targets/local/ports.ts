import { createServer } from 'node:net';

/**
 * Hands out ports from `base` upward: skips the ones this target already holds (an instance
 * may not have bound its port yet) and checks the rest by binding them.
 */
export class PortAllocator {
  private readonly held = new Set<number>();

  constructor(private readonly base: number) {}

  hold(port: number): void {
    this.held.add(port);
  }

  release(port: number): void {
    this.held.delete(port);
  }

  async allocate(): Promise<number> {
    for (let port = this.base; port <= 65535; port++) {
      if (this.held.has(port)) continue;
      this.held.add(port); // before the await, so a concurrent allocate skips it
      if (await isPortFree(port)) return port;
      this.held.delete(port);
    }
    throw new Error(`no free port from ${this.base} upward`);
  }
}

/** Free on loopback and on the wildcard address (apps usually listen on the latter). */
export async function isPortFree(port: number): Promise<boolean> {
  return (await canBind(port, '127.0.0.1')) && (await canBind(port, undefined));
}

function canBind(port: number, host: string | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve(true)));
  });
}
