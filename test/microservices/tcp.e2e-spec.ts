import { ServerTCP, Transport } from '@nestjs/microservices';
import { connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { expect, it } from '@jest/globals';
import type { ClientProxy } from '@nestjs/microservices';
import { firstValueFrom } from 'rxjs';
import { expectChildOf } from '../../lib/testing/index.js';
import { SERVICE } from './support/gateway-app.js';
import { OBJECT_PATTERN } from './support/service-app.js';
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

describeTransport(
  {
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
    controlCharacters: true,
  },
  (apps) => {
    it('names an object pattern alike on both sides, whatever order its keys were sent in', async () => {
      const client = apps.gateway.get<ClientProxy>(SERVICE);
      // TCP sends the pattern as written; the server finds the handler by its sorted form.
      const reordered = { v: OBJECT_PATTERN.v, cmd: OBJECT_PATTERN.cmd };
      expect(await firstValueFrom(client.send(reordered, {}))).toBe('object');
      const route = JSON.stringify(OBJECT_PATTERN);
      const server = await apps.spans.waitForOne(`process ${route}`);
      const sent = apps.spans.one(`send ${route}`);
      expectChildOf(server, sent);
      expect(server.attributes['messaging.destination.name']).toBe(route);
      expect(sent.attributes['messaging.destination.name']).toBe(route);
    });
  },
);
