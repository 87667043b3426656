import type { ServerResponse as Response } from 'node:http';
import { sendJson } from '../../lib/http/respond';
import type { RouteRequest as Request, Route } from '../../lib/http/router';
import { SLACK_KINDS, type SlackKind } from '../../lib/slack/outcomes';
import { parseForm, parseJson, type Parsed } from '../../lib/http/parse';
import { FORM, mediaType, type Refused } from '../../lib/slack/verify';
import { answerFixedCommand, command } from './commands';
import {
  ack,
  header,
  refuseInvalid,
  type Fields,
  type SlackDependencies,
  type SlackKindHandler,
} from './context';
import { event } from './events';
import { interaction } from './interactions';

export type { SlackDependencies } from './context';

const HANDLERS: Record<SlackKind, SlackKindHandler> = {
  commands: command,
  events: event,
  interactions: interaction,
};

function answerRefusal(kind: SlackKind, res: Response, verdict: Refused, deps: SlackDependencies) {
  deps.count(kind, verdict.outcome);
  const { outcome, reason } = verdict;
  // Without a reason, none is logged: the log line's JSON leaves `reason: undefined` out.
  deps.logger.warn('slack request refused', { kind, outcome, reason });
  sendJson(res, verdict.status, { error: verdict.error });
}

/** What each kind's body is: events in JSON, commands and interactions as forms. */
const MEDIA_TYPES: Record<SlackKind, string> = {
  commands: FORM,
  events: 'application/json',
  interactions: FORM,
};

/** Whether a Content-Type is the kind's media type, in UTF-8 if it names a charset. */
function isUtf8(kind: SlackKind, contentType: string | undefined): boolean {
  // Stryker disable next-line StringLiteral: without a Content-Type the media type refuses it whatever text is searched
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(contentType ?? '')?.[1]?.toLowerCase();
  return (
    mediaType(contentType) === MEDIA_TYPES[kind] && (charset === undefined || charset === 'utf-8')
  );
}

/** Whether a request's Content-Type is its kind's media type, in UTF-8 (as Slack sends). */
function acceptsMediaType(kind: SlackKind, req: Request): boolean {
  const contentType = header(req, 'content-type');
  // Slack's own Content-Type is the bare media type: taken without a closer look.
  // Stryker disable next-line ConditionalExpression: the closer look gives the same answer for it, only slower
  return contentType === MEDIA_TYPES[kind] || isUtf8(kind, contentType);
}

/** A verified body as its fields, by the kind's media type. */
function parseBody(kind: SlackKind, body: Buffer): Parsed<Fields> {
  if (MEDIA_TYPES[kind] === FORM) return parseForm(body);
  const parsed = parseJson(body);
  if (!parsed.ok) return parsed;
  const { value } = parsed;
  const invalid = { ok: false, status: 400, error: 'invalid payload' } as const;
  if (value === null) return invalid;
  // Stryker disable next-line ConditionalExpression,LogicalOperator: an array or a primitive has no `type` either, which event() refuses alike (400, invalid payload)
  return typeof value === 'object' && !Array.isArray(value)
    ? { ok: true, value: value as Fields }
    : invalid;
}

/**
 * Slack's three request URLs, POST only: the `slack` function. The pipeline hands each body over
 * raw and unparsed (`body: 'raw'`); it is verified on those bytes, and only a verified body is
 * parsed, bounded in depth and fields. Served alone by functions-framework, whose parsers run
 * first, the same bytes (`req.rawBody`) are verified and parsed the same way.
 */
export function slackRoutes(deps: SlackDependencies): Route[] {
  return SLACK_KINDS.map((kind) => ({
    name: 'slack',
    path: `/slack/${kind}`,
    methods: ['POST'],
    maxBodyBytes: deps.verifier.maxBodyBytes,
    body: 'raw',
    handler: async (req: Request, res: Response) => {
      const body = req.rawBody ?? Buffer.alloc(0);
      const verdict = await deps.verifier.verify({
        kind,
        timestamp: header(req, 'x-slack-request-timestamp'),
        signature: header(req, 'x-slack-signature'),
        body,
        contentType: header(req, 'content-type'),
      });
      if (!verdict.accepted) {
        if (verdict.outcome === 'ssl_check') {
          deps.count(kind, 'ssl_check');
          ack(res);
        } else {
          answerRefusal(kind, res, verdict, deps);
        }
        return;
      }
      if (!acceptsMediaType(kind, req)) {
        refuseInvalid(deps, kind, res, 415, 'unsupported media type');
        return;
      }
      // The usual command, help, is answered from two of its fields, without the whole form.
      // Stryker disable next-line ConditionalExpression,EqualityOperator: the whole form gives the same answer, only slower; other kinds' bodies name no command
      if (kind === 'commands' && answerFixedCommand(body, res, deps)) return;
      const parsed = parseBody(kind, body);
      if (!parsed.ok) {
        refuseInvalid(deps, kind, res, parsed.status, parsed.error);
        return;
      }
      await HANDLERS[kind](parsed.value, res, deps, req);
    },
  }));
}
