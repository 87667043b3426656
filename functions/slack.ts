import type { Request, Response } from '@google-cloud/functions-framework';
import { sendJson, sendText } from '../lib/respond';
import type { Route } from '../lib/router';
import type { RecentIds } from '../lib/slack/recent-ids';
import type { SlackRegistry, SlashCommand } from '../lib/slack/registry';
import { reasonOf } from '../lib/clients/upstream';
import type { SigningSecret } from '../lib/slack/signing-secret';
import { verifySlackSignature, type SignatureVerdict } from '../lib/slack/signature';
import type { Logger } from '../lib/types';

export const SLACK_KINDS = ['commands', 'events', 'interactions'] as const;
export type SlackKind = (typeof SLACK_KINDS)[number];

export type SlackOutcome =
  | SignatureVerdict
  | 'too_large'
  | 'ssl_check'
  | 'url_verification'
  | 'retry_duplicate'
  | 'invalid_payload'
  | 'not_configured'
  | 'secret_unavailable'
  | 'handler_error';

export interface SlackDependencies {
  /** Undefined when no signing secret is configured: every request is then refused. */
  secret: SigningSecret | undefined;
  registry: SlackRegistry;
  recentEvents: RecentIds;
  maxBodyBytes: number;
  /** How long a slash command may run before the answer says so (Slack waits 3 s). */
  commandTimeoutMs: number;
  nowSeconds: () => number;
  logger: Logger;
  count: (kind: SlackKind, outcome: SlackOutcome) => void;
}

type Fields = Record<string, unknown>;
const text = (value: unknown): string => (typeof value === 'string' ? value : '');
const header = (req: Request, name: string): string | undefined => {
  const value = req.headers[name];
  return typeof value === 'string' ? value : undefined;
};
const ack = (res: Response) => {
  sendText(res, 200, 'text/plain; charset=utf-8', '');
};

/** Runs handlers after the acknowledgement; a failing handler is logged, never thrown. */
function dispatchLater<T>(
  handlers: readonly ((input: T) => void | Promise<void>)[],
  input: T,
  fail: () => void,
): void {
  for (const handler of handlers) {
    void Promise.resolve()
      .then(() => handler(input))
      .catch(fail);
  }
}

/**
 * Checks size, then the signature over the raw bytes, before anything reads the body. Answers and
 * returns false when the request must go no further.
 */
async function verified(
  kind: SlackKind,
  req: Request,
  res: Response,
  deps: SlackDependencies,
): Promise<boolean> {
  const refuse = (status: number, outcome: SlackOutcome, error: string, reason?: string) => {
    deps.count(kind, outcome);
    deps.logger.warn('slack request refused', {
      kind,
      outcome,
      ...(reason === undefined ? {} : { reason }),
    });
    sendJson(res, status, { error });
    return false;
  };
  const body = req.rawBody ?? Buffer.alloc(0);
  if (body.length > deps.maxBodyBytes) return refuse(413, 'too_large', 'request too large');
  if (kind === 'commands' && text((req.body as Fields | undefined)?.ssl_check) === '1') {
    // Slack's certificate check carries no signature and asks for nothing but a 200.
    deps.count(kind, 'ssl_check');
    ack(res);
    return false;
  }
  if (deps.secret === undefined) return refuse(503, 'not_configured', 'slack is not configured');
  let secret: string;
  try {
    secret = await deps.secret.current();
  } catch (error) {
    return refuse(503, 'secret_unavailable', 'temporarily unavailable', reasonOf(error));
  }
  const request = {
    timestamp: header(req, 'x-slack-request-timestamp'),
    signature: header(req, 'x-slack-signature'),
    body,
  };
  let verdict = verifySlackSignature(secret, request, deps.nowSeconds());
  if (verdict === 'bad_signature') {
    // Perhaps the secret was rotated: read it again (at most once per TTL) and retry.
    const rotated = await deps.secret.refreshAfterMismatch().catch(() => undefined);
    if (rotated !== undefined) verdict = verifySlackSignature(rotated, request, deps.nowSeconds());
  }
  if (verdict !== 'ok') return refuse(401, verdict, 'invalid request');
  return true;
}

async function command(req: Request, res: Response, deps: SlackDependencies): Promise<void> {
  const form = (req.body ?? {}) as Fields;
  const slash: SlashCommand = {
    command: text(form.command),
    text: text(form.text),
    userId: text(form.user_id),
    channelId: text(form.channel_id),
    teamId: text(form.team_id),
    responseUrl: text(form.response_url),
  };
  if (slash.command === '') {
    deps.count('commands', 'invalid_payload');
    sendJson(res, 400, { error: 'invalid payload' });
    return;
  }
  let timer: NodeJS.Timeout | undefined;
  const tooSlow = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => {
      resolve(undefined);
    }, deps.commandTimeoutMs);
  });
  let answer: string;
  let outcome: SlackOutcome = 'ok';
  try {
    answer =
      (await Promise.race([
        Promise.resolve().then(() => deps.registry.runCommand(slash)),
        tooSlow,
      ])) ?? 'That is taking longer than Slack waits. Please try again.';
  } catch (error) {
    outcome = 'handler_error';
    deps.logger.error('slash command failed', {
      command: slash.command,
      error: error instanceof Error ? error.name : 'non-error thrown',
    });
    answer = 'Sorry, something went wrong.';
  } finally {
    clearTimeout(timer);
  }
  deps.count('commands', outcome);
  sendJson(res, 200, { response_type: 'ephemeral', text: answer });
}

function event(req: Request, res: Response, deps: SlackDependencies): void {
  const envelope = (req.body ?? {}) as Fields;
  if (envelope.type === 'url_verification' && typeof envelope.challenge === 'string') {
    deps.count('events', 'url_verification');
    sendJson(res, 200, { challenge: envelope.challenge });
    return;
  }
  const inner = envelope.event as Fields | undefined;
  const eventId = text(envelope.event_id);
  if (envelope.type !== 'event_callback' || eventId === '' || typeof inner?.type !== 'string') {
    deps.count('events', 'invalid_payload');
    sendJson(res, 400, { error: 'invalid payload' });
    return;
  }
  const seen = deps.recentEvents.checkAndRecord(eventId);
  if (seen && header(req, 'x-slack-retry-num') !== undefined) {
    deps.count('events', 'retry_duplicate');
    ack(res);
    return;
  }
  deps.count('events', 'ok');
  ack(res);
  dispatchLater(deps.registry.handlersForEvent(inner.type), inner, () => {
    deps.count('events', 'handler_error');
    deps.logger.error('event handler failed', { type: inner.type });
  });
}

function interaction(req: Request, res: Response, deps: SlackDependencies): void {
  let payload: Fields | undefined;
  try {
    const parsed: unknown = JSON.parse(text((req.body as Fields | undefined)?.payload));
    if (
      parsed !== null &&
      typeof parsed === 'object' &&
      typeof (parsed as Fields).type === 'string'
    ) {
      payload = parsed as Fields;
    }
  } catch {
    // answered below
  }
  if (payload === undefined) {
    deps.count('interactions', 'invalid_payload');
    sendJson(res, 400, { error: 'invalid payload' });
    return;
  }
  const type = payload.type as string;
  deps.count('interactions', 'ok');
  ack(res);
  dispatchLater(deps.registry.handlersForInteraction(type), payload, () => {
    deps.count('interactions', 'handler_error');
    deps.logger.error('interaction handler failed', { type });
  });
}

const HANDLERS: Record<
  SlackKind,
  (req: Request, res: Response, deps: SlackDependencies) => void | Promise<void>
> = {
  commands: command,
  events: event,
  interactions: interaction,
};

/** Slack's three request URLs, POST only, each verified before anything else: the `slack` function. */
export function slackRoutes(deps: SlackDependencies): Route[] {
  return SLACK_KINDS.map((kind) => ({
    name: 'slack',
    path: `/slack/${kind}`,
    methods: ['POST'],
    handler: async (req: Request, res: Response) => {
      if (await verified(kind, req, res, deps)) await HANDLERS[kind](req, res, deps);
    },
  }));
}
