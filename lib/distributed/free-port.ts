// A TCP port for rank 0's store when the user names none, chosen as torchrun chooses one
// (_get_socket_with_port in torch/distributed/elastic/agent/server/api.py): bind port 0, read what the
// system gave, close. Another process may take it before rank 0 binds it; that race is
// torchrun's too, and the store then fails with an error naming the port.
import * as net from 'net';

/** A port that is free on `host` now (the address the workers' store will listen on). */
export function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', (error: Error) => reject(new Error(`cannot find a free port on ${host} for the workers' store: ${error.message}`)));
    server.listen({ host, port: 0, exclusive: true }, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close((error) => (error ? reject(error) : resolve(port)));
    });
  });
}
