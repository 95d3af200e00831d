import type { Command } from 'commander';

export function registerServer(program: Command) {
  program
    .command('server')
    .description('run the Valve server (API, git, registry, console, pipelines, deploys)')
    .option('--data-dir <dir>', 'where Valve keeps its data (env VALVE_DATA_DIR, default ~/.valve)')
    .option('--host <host>', 'interface to listen on (env VALVE_HOST)', undefined)
    .option('--port <port>', 'port to listen on, 0 for any free one (env VALVE_PORT, default 7080)')
    .action(async (options: { dataDir?: string; host?: string; port?: string }) => {
      const port = options.port === undefined ? undefined : Number(options.port);
      if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) {
        throw new Error(`--port: expected a port number 0-65535, got "${options.port}"`);
      }
      // Loaded here, not at the top: the other commands are HTTP clients and start faster
      // without the server's modules (database driver, git, registry, executors).
      const { loadConfig } = await import('../../config.js');
      const { startServer } = await import('../../server.js');
      const config = loadConfig({ dataDir: options.dataDir, host: options.host, port });
      const server = await startServer(config);
      // Tests and scripts read this line to learn the URL.
      console.log(`Valve listening on ${server.url}`);
      console.log(`Console: ${server.url}/   data: ${config.dataDir}`);
      let stopping = false;
      const stop = async () => {
        if (stopping) return;
        stopping = true;
        await server.close();
        process.exit(0);
      };
      process.on('SIGTERM', () => void stop());
      process.on('SIGINT', () => void stop());
    });
}
