import { jest } from '@jest/globals';
import type { Attributes, Span } from '@opentelemetry/api';
import { EmptyError, TimeoutError } from 'rxjs';
import { addExceptionEvent, errorMessage, errorTypeOf } from './errors.js';

class RpcLikeException extends Error {}
class NamedError extends Error {
  override name = 'SomethingElse';
}

describe('errorTypeOf (error.type, exception.type)', () => {
  it.each([
    [
      "a Node error's string code",
      Object.assign(new Error('x'), { code: 'ECONNREFUSED' }),
      'ECONNREFUSED',
    ],
    [
      'the class of an Error whose name stayed "Error"',
      new RpcLikeException('x'),
      'RpcLikeException',
    ],
    ['the class before a name of its own', new NamedError('x'), 'NamedError'],
    ['a built-in class', new TypeError('x'), 'TypeError'],
    // What Nest's timeout() interceptor throws: class TimeoutErrorImpl, name TimeoutError.
    ["RxJS's name, not its class's", new TimeoutError(), 'TimeoutError'],
    ["RxJS's EmptyError", new EmptyError(), 'EmptyError'],
    ['not a numeric code (a gRPC status)', Object.assign(new Error('x'), { code: 5 }), 'Error'],
    [
      "not a library's code of another shape",
      Object.assign(new RpcLikeException('x'), { code: 'P2002' }),
      'RpcLikeException',
    ],
    ["a DNS error's code", Object.assign(new Error('x'), { code: 'EAI_AGAIN' }), 'EAI_AGAIN'],
    [
      "Node's ERR_ codes",
      Object.assign(new TypeError('x'), { code: 'ERR_INVALID_ARG_TYPE' }),
      'ERR_INVALID_ARG_TYPE',
    ],
    ["a plain object's name", { name: 'Payload', message: 'x' }, 'Payload'],
    ['nothing for a plain object without a name', { code: 5, message: 'x' }, '_OTHER'],
    ['nothing for a string', 'boom', '_OTHER'],
    ['nothing for undefined', undefined, '_OTHER'],
  ])('takes %s', (_label, error, type) => {
    expect(errorTypeOf(error)).toBe(type);
  });

  it("reads the error a plain wrapper carries (amqp-connection-manager's { err, url })", () => {
    const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5699'), {
      code: 'ECONNREFUSED',
    });
    const wrapper = { err: refused, url: 'amqp://127.0.0.1:5699' };
    expect(errorTypeOf(wrapper)).toBe('ECONNREFUSED');
    expect(errorMessage(wrapper)).toBe('connect ECONNREFUSED 127.0.0.1:5699');
    expect(errorTypeOf({ cause: new TypeError('x') })).toBe('TypeError');
    // A payload with a message of its own is itself.
    expect(errorMessage({ message: 'mine', err: refused })).toBe('mine');
  });

  it('reads the message of an error, a payload or a string', () => {
    expect(errorMessage(new Error('a'))).toBe('a');
    expect(errorMessage({ message: 'b' })).toBe('b');
    expect(errorMessage('c')).toBe('c');
    expect(errorMessage(42)).toBeUndefined();
  });
});

describe('addExceptionEvent', () => {
  function recorded(error: unknown): { name: string; attributes: Attributes | undefined } {
    const events: Array<{ name: string; attributes: Attributes | undefined }> = [];
    const span = {
      isRecording: () => true,
      addEvent: (name: string, attributes?: Attributes) => events.push({ name, attributes }),
    } as unknown as Span;
    addExceptionEvent(span, error);
    expect(events).toHaveLength(1);
    return events[0]!;
  }

  it('names the exception as error.type does, with its message and stack', () => {
    const error = new RpcLikeException('refused');
    expect(recorded(error)).toEqual({
      name: 'exception',
      attributes: {
        'exception.type': 'RpcLikeException',
        'exception.message': 'refused',
        'exception.stacktrace': error.stack,
      },
    });
  });

  it('records a payload by its message and a thrown string or bare object by its text', () => {
    expect(recorded({ code: 5, message: 'not found' }).attributes).toEqual({
      'exception.message': 'not found',
    });
    expect(recorded('boom').attributes).toEqual({ 'exception.message': 'boom' });
    expect(recorded({}).attributes).toEqual({ 'exception.message': '[object Object]' });
    // No prototype, so no toString: still recorded, never thrown.
    expect(recorded(Object.create(null)).attributes).toEqual({
      'exception.message': '[object Object]',
    });
  });

  it('records nothing on a span that records nothing', () => {
    const addEvent = jest.fn();
    const span = { isRecording: () => false, addEvent } as unknown as Span;
    addExceptionEvent(span, new Error('x'));
    expect(addEvent).not.toHaveBeenCalled();
  });
});
