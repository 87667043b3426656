import { readFile } from 'node:fs';
import { promisify } from 'node:util';

const read = promisify(readFile);

/**
 * A file's text (UTF-8), through fs's callback API: node:fs/promises brings readline and more with
 * it when first loaded, over a megabyte of memory for the one call made here.
 */
export function readTextFile(file: string): Promise<string> {
  return read(file, 'utf8');
}
