export { SHOP, brokerEnabled, type Broker } from './shop.config.js';
export { ORDERS_PROTO } from './proto-path.js';
export type {
  ChargeRequest,
  ChargeResult,
  CreateOrderRequest,
  FindOrderRequest,
  Order,
  OrderCreated,
  OrdersClient,
} from './shop.types.js';
export { PATTERNS } from './shop.patterns.js';
