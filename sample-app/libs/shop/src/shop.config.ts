/**
 * Where each service of the shop listens, from the environment the demo sets (defaults for a
 * machine with the brokers on their standard loopback ports).
 */
const env = (name: string, fallback: string): string => process.env[name] ?? fallback;

export const SHOP = {
  gatewayPort: Number(env('PORT', '3000')),
  ordersUrl: env('ORDERS_GRPC_URL', '127.0.0.1:50051'),
  paymentsHost: env('PAYMENTS_HOST', '127.0.0.1'),
  paymentsPort: Number(env('PAYMENTS_PORT', '3001')),
  rabbitmqUrl: env('RABBITMQ_URL', 'amqp://guest:guest@127.0.0.1:5672'),
  inventoryQueue: env('INVENTORY_QUEUE', 'shop-inventory'),
  natsUrl: env('NATS_URL', 'nats://127.0.0.1:4222'),
  mqttUrl: env('MQTT_URL', 'mqtt://127.0.0.1:1883'),
  /** Share of charges that fail or are slow without being asked to (0..1). */
  paymentFailRate: Number(env('PAYMENTS_FAIL_RATE', '0')),
  paymentSlowRate: Number(env('PAYMENTS_SLOW_RATE', '0')),
} as const;

export type Broker = 'rabbitmq' | 'nats' | 'mqtt';

/**
 * Whether a broker is reachable, as the demo found out before starting the services
 * (`SHOP_BROKERS=rabbitmq,nats,mqtt`; all of them when unset). A service does not emit to a
 * broker that is not there, so the rest of the shop runs without it.
 */
export function brokerEnabled(broker: Broker): boolean {
  const list = process.env.SHOP_BROKERS;
  return (
    list === undefined ||
    list
      .split(',')
      .map((b) => b.trim())
      .includes(broker)
  );
}
