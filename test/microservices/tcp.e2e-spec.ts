import { ServerTCP, Transport } from '@nestjs/microservices';
import { connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { describeTransport, type RawPublish } from './support/transport-suite.js';

// A real TCP server on a port the OS picks, found again by the client.
let server: ServerTCP | undefined;
const port = (): number => (server!.unwrap<Server>().address() as AddressInfo).port;

/** What any TCP peer speaking Nest's framing (`<length>#<json>`) sends: metadata beside the data. */
function rawPublish(): RawPublish {
  return async (pattern, data, metadata) => {
    const socket: Socket = connect(port(), '127.0.0.1');
    await new Promise<void>((resolve, reject) =>
      socket.once('connect', resolve).once('error', reject),
    );
    const json = JSON.stringify({ pattern, data, metadata });
    await new Promise<void>((resolve) => socket.end(`${Buffer.byteLength(json)}#${json}`, resolve));
  };
}

describeTransport({
  name: 'tcp',
  system: 'tcp',
  clientStyle: 'register',
  server: () => {
    server = new ServerTCP({ host: '127.0.0.1', port: 0 });
    return { strategy: server };
  },
  client: () => ({ transport: Transport.TCP, options: { host: '127.0.0.1', port: port() } }),
  destination: (pattern) => ({ client: pattern, server: pattern }),
  rawPublish,
});
