import type { PortAllocator } from '../local/ports.js';

/**
 * Opens a workload's stable address on a free port. A port found free can be taken before
 * the proxy binds it: then the next one is tried (five in all).
 */
export async function listenOnFreePort<T>(
  ports: PortAllocator,
  open: (port: number) => Promise<T>,
): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const port = await ports.allocate();
    try {
      return await open(port);
    } catch (error) {
      if (attempt >= 5) throw error;
    }
  }
}
