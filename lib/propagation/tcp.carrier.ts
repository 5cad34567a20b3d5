import { recordGetter, recordSetter, type HeaderRecord } from './header-values.js';

/**
 * TCP: the context travels in the packet's `metadata` object, which Nest 12 sends next to
 * `pattern` and `data` (written by a client's dispatch hook, read with `TcpContext#getMetadata()`).
 */
export type TcpCarrier = HeaderRecord;

export const tcpGetter = recordGetter;
export const tcpSetter = recordSetter;

/** `messaging.system` of a TCP hop (Nest's own transport, no broker). */
export const TCP_SYSTEM = 'tcp';
