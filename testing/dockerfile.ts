import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from './process';

export interface Instruction {
  keyword: string;
  args: string;
}

export interface Stage {
  image: string;
  name: string | undefined;
  instructions: Instruction[];
}

/** Parses a Dockerfile into stages (comments dropped, continuation lines joined). */
export function parseDockerfile(text: string): Stage[] {
  const lines = text.replace(/\\\r?\n/g, ' ').split(/\r?\n/);
  const stages: Stage[] = [];
  for (const line of lines) {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#')) continue;
    const [, keyword = '', args = ''] = /^(\S+)\s*(.*)$/.exec(trimmed) ?? [];
    const upper = keyword.toUpperCase();
    if (upper === 'FROM') {
      const [, image = '', name] = /^(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?$/i.exec(args) ?? [];
      stages.push({ image, name, instructions: [] });
    } else {
      const stage = stages.at(-1);
      if (stage === undefined) throw new Error(`${upper} before FROM`);
      stage.instructions.push({ keyword: upper, args });
    }
  }
  return stages;
}

export function readDockerfile(): Stage[] {
  return parseDockerfile(fs.readFileSync(path.join(REPO_ROOT, 'Dockerfile'), 'utf8'));
}

export const argsOf = (stage: Stage, keyword: string): string[] =>
  stage.instructions.filter((i) => i.keyword === keyword).map((i) => i.args);

/** The stage's ENV as a map (the KEY=VALUE form). */
export function envOf(stage: Stage): Record<string, string> {
  const env: Record<string, string> = {};
  for (const args of argsOf(stage, 'ENV')) {
    for (const [, key = '', value = ''] of args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) {
      env[key] = value.replace(/^"|"$/g, '');
    }
  }
  return env;
}

/** The exec-form CMD as an array, or undefined when it is shell form. */
export function execCommand(stage: Stage): string[] | undefined {
  const cmd = argsOf(stage, 'CMD').at(-1);
  if (cmd?.startsWith('[') !== true) return undefined;
  return JSON.parse(cmd) as string[];
}

/** The final stage's COPY sources as paths in the repository (a build stage's output included). */
export function runtimeCopies(stages: Stage[]): { source: string; target: string }[] {
  const runtime = stages.at(-1);
  if (runtime === undefined) return [];
  return argsOf(runtime, 'COPY').flatMap((args) => {
    const from = /--from=(\S+)/.exec(args)?.[1];
    const parts = args.split(/\s+/).filter((p) => !p.startsWith('--'));
    const target = parts.pop() ?? '.';
    const workdir =
      from === undefined
        ? ''
        : (argsOf(
            stages.find((s) => s.name === from)!,
            'WORKDIR',
          ).at(-1) ?? '/');
    return parts.map((source) => ({
      source: from === undefined ? source : path.relative(workdir, source),
      target,
    }));
  });
}
