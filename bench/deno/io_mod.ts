// A local stand-in for https://deno.land/std@0.186.0/io/mod.ts, which DSPy's
// sandbox runner (dspy/primitives/runner.js) imports for `readLines` only.
// The benchmark maps that URL here (bench/deno/import_map.json) so the runner
// starts without reaching deno.land.  Written for this benchmark; not std code.
//
// readLines(reader) yields each line of `reader` without its "\n" (and without
// a "\r" before it), decoding UTF-8 once per line.  Bytes are gathered per line
// and joined once, so a long line costs O(length), like std's version.

interface Reader {
  read(p: Uint8Array): Promise<number | null>;
}

const NEWLINE = 10;
const CR = 13;

function joinChunks(chunks: Uint8Array[], total: number): Uint8Array {
  if (chunks.length === 1) return chunks[0];
  const out = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

export async function* readLines(
  reader: Reader,
  decoderOpts?: { encoding?: string; fatal?: boolean; ignoreBOM?: boolean },
): AsyncIterableIterator<string> {
  const decoder = new TextDecoder(decoderOpts?.encoding ?? "utf-8", decoderOpts);
  const buffer = new Uint8Array(1 << 20);
  let chunks: Uint8Array[] = [];
  let total = 0;
  const emit = (): string => {
    let line = joinChunks(chunks, total);
    if (line.length > 0 && line[line.length - 1] === CR) line = line.subarray(0, line.length - 1);
    chunks = [];
    total = 0;
    return decoder.decode(line);
  };
  while (true) {
    const n = await reader.read(buffer);
    if (n === null) break;
    let start = 0;
    while (start < n) {
      const nl = buffer.subarray(start, n).indexOf(NEWLINE);
      if (nl < 0) {
        chunks.push(buffer.slice(start, n));
        total += n - start;
        break;
      }
      chunks.push(buffer.slice(start, start + nl));
      total += nl;
      start += nl + 1;
      yield emit();
    }
  }
  if (total > 0) yield emit();
}
