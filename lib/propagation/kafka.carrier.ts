import type { Attributes } from '@opentelemetry/api';
import { isUtf8 } from 'node:buffer';
import { headerValue, recordGetter, recordSetter, type HeaderRecord } from './header-values.js';
import {
  ATTR_MESSAGING_DESTINATION_PARTITION_ID,
  ATTR_KAFKA_MESSAGE_KEY,
  ATTR_KAFKA_OFFSET,
  MESSAGING_SYSTEM_VALUE_KAFKA,
} from './semconv.js';

/**
 * Kafka: the context travels in the record headers, as every Kafka client writes them. kafkajs
 * delivers header values as Buffers (arrays when a name repeats); Nest's parser may have turned
 * them into strings already.
 */
export type KafkaCarrier = HeaderRecord;

/** The parts of a kafkajs message the tracer reads. */
export interface KafkaMessageLike {
  headers?: unknown;
  key?: unknown;
  offset?: unknown;
}

export const kafkaGetter = recordGetter;
export const kafkaSetter = recordSetter;
export const KAFKA_SYSTEM = MESSAGING_SYSTEM_VALUE_KAFKA;

export function kafkaHeaders(message: KafkaMessageLike | undefined): KafkaCarrier | undefined {
  const headers = message?.headers;
  return headers !== null && typeof headers === 'object' ? (headers as KafkaCarrier) : undefined;
}

/** Partition, offset and key of a consumed record. */
// eslint-disable-next-line no-control-regex -- what makes a key binary
const CONTROL_CHARACTER = /[\u0000-\u0008\u000e-\u001f\u007f\ufffd]/;

export function kafkaMessageAttributes(
  message: KafkaMessageLike | undefined,
  partition: unknown,
  into: Attributes,
): void {
  if (typeof partition === 'number')
    into[ATTR_MESSAGING_DESTINATION_PARTITION_ID] = String(partition);
  const offset = Number(headerValue(message?.offset));
  if (Number.isInteger(offset)) into[ATTR_KAFKA_OFFSET] = offset;
  addKey(message?.key, into);
}

/**
 * `kafka.message.key`: a key's string form. Nest's parser turns a key that is JSON
 * into an object (it is written back as JSON); one with no canonical string form (binary: a
 * schema registry's magic byte, say) is left out.
 */
function addKey(raw: unknown, into: Attributes): void {
  if (raw instanceof Uint8Array && !isUtf8(raw)) return;
  let key: unknown;
  if (typeof raw === 'number' || typeof raw === 'bigint') key = String(raw);
  else if (raw !== null && typeof raw === 'object' && !(raw instanceof Uint8Array)) {
    try {
      key = JSON.stringify(raw);
    } catch {
      return;
    }
  } else key = headerValue(raw);
  if (typeof key === 'string' && key !== '' && !CONTROL_CHARACTER.test(key)) {
    into[ATTR_KAFKA_MESSAGE_KEY] = key;
  }
}

/**
 * Key and partition of a record a Nest Kafka client sends (`emit`/`send` data given as a record,
 * `{ key, value, partition }`, as Nest's serializer reads it): known before it goes.
 */
export function kafkaRecordAttributes(data: unknown, into: Attributes): void {
  if (data === null || typeof data !== 'object' || !('key' in data || 'value' in data)) return;
  const record = data as { key?: unknown; partition?: unknown };
  if (record.key !== undefined && record.key !== null) addKey(record.key, into);
  if (typeof record.partition === 'number' && Number.isInteger(record.partition)) {
    into[ATTR_MESSAGING_DESTINATION_PARTITION_ID] = String(record.partition);
  }
}
