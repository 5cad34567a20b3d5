import { recordGetter, recordSetter, type HeaderRecord } from './header-values.js';

/**
 * MQTT: the context travels in the MQTT 5 user properties of the PUBLISH packet
 * (`properties.userProperties`), where a value is a string, or an array of them when a name
 * repeats. MQTT 3.1.1 has no user properties: both sides must speak protocol version 5.
 */
export type MqttCarrier = HeaderRecord;

/** The parts of an mqtt.js PUBLISH packet the tracer reads. */
export interface MqttPacketLike {
  properties?: { userProperties?: unknown };
}

export const mqttGetter = recordGetter;
export const mqttSetter = recordSetter;
export const MQTT_SYSTEM = 'mqtt';

export function mqttUserProperties(packet: MqttPacketLike | undefined): MqttCarrier | undefined {
  const props = packet?.properties?.userProperties;
  return props !== null && typeof props === 'object' ? (props as MqttCarrier) : undefined;
}
