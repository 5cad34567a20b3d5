/**
 * Messaging attribute names that are still experimental in `@opentelemetry/semantic-conventions`
 * (they live in its `incubating` entry point, which may change in any minor release). As
 * OpenTelemetry advises instrumentations to do, the names in use are copied here, so that a
 * semantic-conventions update cannot rename an attribute under our users' dashboards. A unit test
 * keeps each equal to the incubating constant of the same name.
 */
export const ATTR_MESSAGING_SYSTEM = 'messaging.system' as const;
export const ATTR_MESSAGING_OPERATION_NAME = 'messaging.operation.name' as const;
export const ATTR_MESSAGING_OPERATION_TYPE = 'messaging.operation.type' as const;
export const ATTR_MESSAGING_DESTINATION_NAME = 'messaging.destination.name' as const;
export const ATTR_MESSAGING_DESTINATION_PARTITION_ID =
  'messaging.destination.partition.id' as const;
export const ATTR_MESSAGING_MESSAGE_ID = 'messaging.message.id' as const;
export const ATTR_MESSAGING_MESSAGE_CONVERSATION_ID = 'messaging.message.conversation_id' as const;
export const ATTR_MESSAGING_BATCH_MESSAGE_COUNT = 'messaging.batch.message_count' as const;
export const ATTR_MESSAGING_CONSUMER_GROUP_NAME = 'messaging.consumer.group.name' as const;
export const ATTR_KAFKA_MESSAGE_KEY = 'kafka.message.key' as const;
export const ATTR_KAFKA_OFFSET = 'kafka.offset' as const;
export const ATTR_RABBITMQ_DESTINATION_ROUTING_KEY = 'rabbitmq.destination.routing_key' as const;

export const MESSAGING_OPERATION_TYPE_VALUE_SEND = 'send' as const;
export const MESSAGING_OPERATION_TYPE_VALUE_PROCESS = 'process' as const;
export const MESSAGING_SYSTEM_VALUE_RABBITMQ = 'rabbitmq' as const;
export const MESSAGING_SYSTEM_VALUE_KAFKA = 'kafka' as const;
