import http from 'node:http';
import type https from 'node:https';
import { performance } from 'node:perf_hooks';
import { describeFailure } from '../http/upstream';
import type { Logger } from '../logger';

/** How a publish to K_SINK ended: the sink answered 2xx, or not (any status, refusal, timeout). */
export const PUBLISH_OUTCOMES = ['ok', 'failed'] as const;
export type PublishOutcome = (typeof PUBLISH_OUTCOMES)[number];

/** An event's attributes and data; specversion, datacontenttype, extensions are the publisher's. */
export interface EventToPublish {
  id: string;
  type: string;
  source: string;
  /**
   * JSON text, sent as the body byte for byte (`datacontenttype: application/json`): never parsed
   * and written again, which could make it larger than what was received.
   */
  data: Buffer;
  /** When what the event tells of happened (RFC 3339), if the producer knows it. */
  time?: string;
  /**
   * Extensions of its own ([a-z0-9] names: Slack's retry, a replayed event's); K_CE_OVERRIDES'
   * win over them.
   */
  extensions?: Readonly<Record<string, string>>;
}

/** Whether the sink took the event: only its 2xx answer counts. */
export type PublishResult = { ok: true } | { ok: false; reason: string; status?: number };

/** Where the ingress hands verified Slack requests over. */
export interface Publisher {
  /** Never rejects: a failure is a result, logged once by the publisher. */
  publish(event: EventToPublish): Promise<PublishResult>;
  /** Destroys the sockets; after the drain, when no publish is in flight. */
  close(): void;
}

export interface CloudEventPublisherOptions {
  /** K_SINK: an http:// or https:// URL. */
  sink: string;
  /** K_CE_OVERRIDES' extensions, added to every event. */
  extensions: Readonly<Record<string, string>>;
  /** One deadline over the whole publish: a free socket, connect, send, the answer's status. */
  timeoutMs: number;
  logger: Logger;
  observe: (outcome: PublishOutcome, seconds: number) => void;
}

type CloudEventsSdk = typeof import('cloudevents');

/** A broker's answer is empty or a short error; more than this is read no further. */
const MAX_ANSWER_BYTES = 16 * 1024;
/** Idle keep-alive sockets are dropped before typical server idle timeouts close them under us. */
const FREE_SOCKET_TIMEOUT_MS = 4000;
/** Publishes at once per pod: one per Slack request in flight; beyond, they wait for a socket. */
const MAX_SOCKETS = 64;
const MAX_FREE_SOCKETS = 8;

const judge = (status: number): PublishResult =>
  // Stryker disable next-line ConditionalExpression: Node's client never ends with a status below 200 (1xx are interim)
  status >= 200 && status < 300 ? { ok: true } : { ok: false, reason: `status ${status}`, status };

/** A pooled connection the sink closed as it was reused fails this way, before any answer. */
const isReset = (error: unknown): boolean => {
  const code = (error as { code?: string } | undefined)?.code;
  return code === 'ECONNRESET' || code === 'EPIPE';
};

/**
 * POSTs CloudEvents in binary mode to one sink (Knative's K_SINK, a Broker's ingress) over one
 * keep-alive agent, within a hard deadline, and reports ok only on a 2xx answer. The `cloudevents`
 * SDK is loaded by the constructor, so that a process without K_SINK never loads it.
 */
export class CloudEventPublisher implements Publisher {
  private readonly sdk: CloudEventsSdk;
  private readonly url: URL;
  private readonly agent: http.Agent;
  private readonly request: typeof http.request;

  constructor(private readonly options: CloudEventPublisherOptions) {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    this.sdk = require('cloudevents') as CloudEventsSdk;
    this.url = new URL(options.sink);
    const agentOptions = {
      keepAlive: true,
      maxSockets: MAX_SOCKETS,
      maxFreeSockets: MAX_FREE_SOCKETS,
      timeout: FREE_SOCKET_TIMEOUT_MS,
    };
    if (this.url.protocol === 'https:') {
      // Loaded only for an https sink: TLS costs every cold start that loads it.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const tls = require('node:https') as typeof https;
      this.agent = new tls.Agent(agentOptions);
      this.request = tls.request;
    } else {
      this.agent = new http.Agent(agentOptions);
      this.request = http.request;
    }
  }

  async publish(event: EventToPublish): Promise<PublishResult> {
    const started = performance.now();
    const result = await this.post(event);
    this.options.observe(result.ok ? 'ok' : 'failed', (performance.now() - started) / 1000);
    if (!result.ok) {
      // The event's id and type only: its data is a person's message.
      this.options.logger.warn('cloudevent not published', {
        id: event.id,
        type: event.type,
        reason: result.reason,
        // Stryker disable next-line ConditionalExpression: status: undefined is left out of the JSON line too
        ...(result.status === undefined ? {} : { status: result.status }),
      });
    }
    return result;
  }

  close(): void {
    this.agent.destroy();
  }

  /**
   * The event in binary mode: attributes as `ce-` headers (the SDK builds and checks them), the
   * data's bytes as the body.
   */
  private message(event: EventToPublish): { headers: Record<string, string>; body: Buffer } {
    const { CloudEvent, HTTP } = this.sdk;
    const cloudEvent = new CloudEvent({
      ...event.extensions,
      ...this.options.extensions,
      // Stryker disable next-line StringLiteral: the SDK takes an empty specversion as its default, 1.0
      specversion: '1.0',
      id: event.id,
      type: event.type,
      source: event.source,
      // Stryker disable next-line ConditionalExpression: the SDK takes time: undefined as no time (now)
      ...(event.time === undefined ? {} : { time: event.time }),
      datacontenttype: 'application/json',
    });
    const strings: Record<string, string> = {};
    for (const [name, value] of Object.entries(HTTP.binary(cloudEvent).headers)) {
      strings[name] = String(value);
    }
    return {
      headers: { ...strings, 'content-length': String(event.data.length) },
      body: event.data,
    };
  }

  /**
   * One publish, settled by the sink's status or the deadline, whichever comes first; the
   * request is destroyed at the deadline. A reused socket reset before any answer is tried once
   * more on a new one within the same deadline (a duplicate is harmless: the id is the same).
   */
  private post(event: EventToPublish): Promise<PublishResult> {
    let message: ReturnType<CloudEventPublisher['message']>;
    try {
      message = this.message(event);
    } catch {
      return Promise.resolve({ ok: false, reason: 'invalid CloudEvent' });
    }
    const { timeoutMs } = this.options;
    return new Promise((resolve) => {
      let current: http.ClientRequest | undefined;
      let status: number | undefined;
      let settled = false;
      const settle = (result: PublishResult) => {
        // Stryker disable next-line ConditionalExpression: settling again resolves a settled promise and clears a cleared timer: no-ops
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        resolve(result);
      };
      const timer = setTimeout(() => {
        // A status already received decides: the sink has answered, only its body is late.
        settle(
          status === undefined
            ? { ok: false, reason: `timeout after ${timeoutMs} ms` }
            : judge(status),
        );
        current?.destroy();
      }, timeoutMs);
      const fail = (error: unknown) => {
        settle({ ok: false, reason: describeFailure(error, this.url.hostname, timeoutMs) });
      };
      const attempt = (first: boolean) => {
        let req: http.ClientRequest;
        try {
          req = this.request(this.url, {
            method: 'POST',
            agent: this.agent,
            headers: message.headers,
          });
        } catch (error) {
          // A header Node refuses (ERR_INVALID_CHAR): a failure like any other, never a throw.
          fail(error);
          return;
        }
        current = req;
        req.on('response', (res) => {
          status = res.statusCode ?? 0;
          const answered = judge(status);
          let bytes = 0;
          // Read and dropped, so that the socket goes back to the pool; cut off when too long.
          res.on('data', (chunk: Buffer) => {
            bytes += chunk.length;
            if (bytes > MAX_ANSWER_BYTES) res.destroy();
          });
          // Stryker disable next-line StringLiteral,BlockStatement: 'close' follows 'end' and settles the same
          res.on('end', () => {
            settle(answered);
          });
          res.on('close', () => {
            settle(answered);
          });
          // Stryker disable next-line StringLiteral,BlockStatement: 'close' follows an error and settles the same; without an 'error' listener, an answer Node destroys emits none (IncomingMessage's onError)
          res.on('error', () => {
            settle(answered);
          });
        });
        req.on('error', (error) => {
          if (settled) return;
          // Stryker disable next-line BlockStatement: the answer's 'close' follows and settles with the same judge(status)
          if (status !== undefined) {
            settle(judge(status));
          } else if (first && req.reusedSocket && isReset(error)) {
            attempt(false);
          } else {
            fail(error);
          }
        });
        req.end(message.body);
      };
      attempt(true);
    });
  }
}
