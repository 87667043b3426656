import type { Request, Response } from '@google-cloud/functions-framework';
import { sendJson } from '../../lib/http/respond';
import type { Route } from '../../lib/http/router';
import { SLACK_KINDS, type SlackKind } from '../../lib/slack/outcomes';
import type { Refused } from '../../lib/slack/verify';
import { command } from './commands';
import { ack, header, type Fields, type SlackDependencies, type SlackKindHandler } from './context';
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
  if (verdict.outcome === 'ssl_check') {
    ack(res);
    return;
  }
  const { outcome, reason } = verdict;
  deps.logger.warn('slack request refused', {
    kind,
    outcome,
    ...(reason === undefined ? {} : { reason }),
  });
  sendJson(res, verdict.status, { error: verdict.error });
}

/** Slack's three request URLs, POST only, each verified before anything else: the `slack` function. */
export function slackRoutes(deps: SlackDependencies): Route[] {
  return SLACK_KINDS.map((kind) => ({
    name: 'slack',
    path: `/slack/${kind}`,
    methods: ['POST'],
    maxBodyBytes: deps.verifier.maxBodyBytes,
    handler: async (req: Request, res: Response) => {
      const verdict = await deps.verifier.verify({
        kind,
        timestamp: header(req, 'x-slack-request-timestamp'),
        signature: header(req, 'x-slack-signature'),
        body: req.rawBody ?? Buffer.alloc(0),
        fields: req.body as Fields | undefined,
        contentType: header(req, 'content-type'),
      });
      if (verdict.accepted) await HANDLERS[kind](req, res, deps);
      else answerRefusal(kind, res, verdict, deps);
    },
  }));
}
