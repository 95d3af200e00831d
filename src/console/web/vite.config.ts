/**
 * Builds the web console into <repo>/dist/web, where src/console/routes.ts serves it.
 * Run from the repository root: `npx vite build --config src/console/web/vite.config.ts`.
 */
import { fileURLToPath } from 'node:url';
import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

const webRoot = fileURLToPath(new URL('.', import.meta.url));
// Its own folder: dist/console holds the compiled server module of the console (routes.js).
const outDir = fileURLToPath(new URL('../../../dist/web', import.meta.url));

export default defineConfig({
  root: webRoot,
  base: '/',
  plugins: [react()],
  build: {
    outDir,
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: true,
  },
  server: {
    // `npx vite --config src/console/web/vite.config.ts` next to a running `valve server`.
    proxy: {
      '/api': { target: 'http://127.0.0.1:7080' },
    },
  },
});
