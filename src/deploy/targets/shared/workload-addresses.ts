import type { PortAllocator } from '../local/ports.js';
import { WorkloadProxy } from '../local/proxy.js';
import type { TargetLogger } from '../target.js';
import { listenOnFreePort } from './proxy-port.js';

/** What the addresses need of a workload. */
export interface AddressedWorkload {
  record: { key: string; proxyPort: number; message: string | null };
  /** The stable address. */
  proxy: WorkloadProxy | null;
  /** Blue-green: an address serving only the candidates, until the switch. */
  preview: WorkloadProxy | null;
}

/** What removing a workload needs of its instances. */
export interface RunningInstance {
  readonly record: { port: number };
  stop(): Promise<void>;
}

/**
 * The addresses of one target's workloads (local, podman): each workload's stable address, a
 * proxy on a port of its own kept for good (across applies and server restarts), and during a
 * blue-green rollout its preview address, on a port taken for that rollout only.
 */
export class WorkloadAddresses {
  /** `host`: the interface the addresses listen on; `ports`: the target's, shared with its instances. */
  constructor(
    private readonly ports: PortAllocator,
    private readonly host: string,
    private readonly logger: TargetLogger,
  ) {}

  /** A new workload's stable address, on a free port (saved as `record.proxyPort`). */
  async openNew(workload: AddressedWorkload): Promise<void> {
    workload.proxy = await listenOnFreePort(this.ports, (port) => {
      workload.record.proxyPort = port;
      return this.listen(port, workload.record.key);
    });
  }

  /**
   * An earlier server's workload: its stable address again, on its port. When the port cannot
   * be had, the workload has none and its message says why.
   */
  async reopen(workload: AddressedWorkload): Promise<void> {
    const { key, proxyPort } = workload.record;
    try {
      workload.proxy = await this.listen(proxyPort, key);
    } catch (error) {
      workload.record.message = `cannot reopen the address on port ${proxyPort}: ${(error as Error).message}`;
      this.logger.error({ workload: key, err: error }, 'cannot reopen workload address');
    }
  }

  /** Blue-green: a second address, serving only the candidates. */
  async openPreview(workload: AddressedWorkload): Promise<void> {
    if (workload.preview) return;
    workload.preview = await listenOnFreePort(this.ports, async (port) => {
      try {
        return await this.listen(port, `${workload.record.key} (preview)`);
      } catch (error) {
        this.ports.release(port);
        throw error;
      }
    });
  }

  async closePreview(workload: AddressedWorkload): Promise<void> {
    const preview = workload.preview;
    if (!preview) return;
    workload.preview = null;
    await preview.close();
    this.ports.release(Number(new URL(preview.url).port));
  }

  /** Closes both addresses (the stable one keeps its port in `record.proxyPort`). */
  async close(workload: AddressedWorkload): Promise<void> {
    await workload.proxy?.close();
    workload.proxy = null;
    await this.closePreview(workload);
  }

  /**
   * A deleted workload: its addresses close, its instances stop, and every port it held (its
   * addresses' and its instances') is free again.
   */
  async remove(workload: AddressedWorkload & { instances: RunningInstance[] }): Promise<void> {
    await this.close(workload);
    await Promise.all(workload.instances.map((instance) => instance.stop()));
    for (const instance of workload.instances) this.ports.release(instance.record.port);
    this.ports.release(workload.record.proxyPort);
  }

  private async listen(port: number, name: string): Promise<WorkloadProxy> {
    const proxy = new WorkloadProxy({ host: this.host, port, name, logger: this.logger });
    await proxy.listen();
    return proxy;
  }
}
