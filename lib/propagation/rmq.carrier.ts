import type { Attributes } from '@opentelemetry/api';
import { headerValue, recordGetter, recordSetter, type HeaderRecord } from './header-values.js';
import {
  ATTR_MESSAGING_MESSAGE_CONVERSATION_ID,
  ATTR_MESSAGING_MESSAGE_ID,
  ATTR_RABBITMQ_DESTINATION_ROUTING_KEY,
  MESSAGING_SYSTEM_VALUE_RABBITMQ,
} from './semconv.js';

/**
 * RabbitMQ: the context travels in the per-message AMQP headers (`properties.headers`), where
 * amqplib, pika and every other AMQP client read and write them. Values arriving there may be
 * strings, Buffers (AMQP byte arrays) or numbers.
 */
export type RmqCarrier = HeaderRecord;

/** The parts of an amqplib message the tracer reads. */
export interface AmqpMessageLike {
  fields?: { routingKey?: unknown; exchange?: unknown };
  properties?: { headers?: unknown; messageId?: unknown; correlationId?: unknown };
}

export const rmqGetter = recordGetter;
export const rmqSetter = recordSetter;
export const RMQ_SYSTEM = MESSAGING_SYSTEM_VALUE_RABBITMQ;

/** The headers of a delivered message, if it has any. */
export function rmqHeaders(message: AmqpMessageLike | undefined): RmqCarrier | undefined {
  const headers = message?.properties?.headers;
  return headers !== null && typeof headers === 'object' ? (headers as RmqCarrier) : undefined;
}

/** Message id, correlation id and routing key of a delivered message. */
export function rmqMessageAttributes(message: AmqpMessageLike | undefined, into: Attributes): void {
  const messageId = headerValue(message?.properties?.messageId);
  if (typeof messageId === 'string' && messageId !== '')
    into[ATTR_MESSAGING_MESSAGE_ID] = messageId;
  const correlationId = headerValue(message?.properties?.correlationId);
  if (typeof correlationId === 'string' && correlationId !== '') {
    into[ATTR_MESSAGING_MESSAGE_CONVERSATION_ID] = correlationId;
  }
  const routingKey = message?.fields?.routingKey;
  if (typeof routingKey === 'string' && routingKey !== '') {
    into[ATTR_RABBITMQ_DESTINATION_ROUTING_KEY] = routingKey;
  }
}
