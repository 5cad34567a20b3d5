/** The message and event patterns the services agree on. */
export const PATTERNS = {
  charge: 'payments.charge',
  orderCreated: 'order.created',
  audit: 'shop/audit',
} as const;
