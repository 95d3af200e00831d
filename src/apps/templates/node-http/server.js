// {{app}}: a small Node.js HTTP service, created by Valve from the node-http template.
import { createServer } from 'node:http';
import { greeting } from './greeting.js';

const port = Number(process.env.PORT ?? 8080);

const server = createServer((request, response) => {
  if (request.url === '/healthz') {
    response.writeHead(200, { 'content-type': 'text/plain' });
    response.end('ok\n');
    return;
  }
  response.writeHead(200, { 'content-type': 'text/plain' });
  response.end(greeting(process.env.GREETING ?? 'Hello') + '\n');
});

server.listen(port, () => console.log(`{{app}} listening on port ${port}`));

// Finish the requests in flight, then exit: Valve sends SIGTERM when a newer version is live.
process.on('SIGTERM', () => server.close(() => process.exit(0)));
