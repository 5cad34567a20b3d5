import type { TextMapSetter } from '@opentelemetry/api';
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

/** Control characters, C0 and C1: MQTT strings should hold none, and Mosquitto drops the client. */
// eslint-disable-next-line no-control-regex -- what an MQTT string should not hold
const MQTT_CONTROL = /[\x00-\x1f\x7f-\x9f]/;

/**
 * Writes a user property. A value that came from an HTTP request may hold a tab (whitespace a
 * `baggage` or `tracestate` list allows around its members), or a C1 control character (a
 * latin1 byte): a broker such as Mosquitto closes the connection of a client that publishes a
 * control character in a user property, with whatever else it had in flight. Tabs become spaces
 * (the same whitespace there); a value with any other control character is left out.
 */
export const mqttSetter: TextMapSetter<HeaderRecord> = {
  set: (carrier, key, value) => {
    let text = value;
    if (MQTT_CONTROL.test(text)) {
      text = text.replace(/\t/g, ' ');
      if (MQTT_CONTROL.test(text)) return;
    }
    recordSetter.set(carrier, key, text);
  },
};
export const MQTT_SYSTEM = 'mqtt';

export function mqttUserProperties(packet: MqttPacketLike | undefined): MqttCarrier | undefined {
  const props = packet?.properties?.userProperties;
  return props !== null && typeof props === 'object' ? (props as MqttCarrier) : undefined;
}
