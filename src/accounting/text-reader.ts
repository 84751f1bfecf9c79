/**
 * Reading a text file a chunk at a time, for verifying receipt exports of
 * any size in bounded memory (export.ts): UTF-8 decoded across chunk
 * boundaries as readFile(file, 'utf8') decodes it (a bad sequence becomes
 * U+FFFD, a byte order mark stays for the caller to take off), and handed
 * out as lines (CSV) or as the text of one JSON value at a time.
 *
 * Only what is not yet consumed is held: at most a chunk plus the line or
 * value being read.
 */

/** A JSON syntax error; `position` counts characters from the start of the text. */
export class JsonSyntaxError extends Error {
  static name = 'JsonSyntaxError'
  constructor (message: string, readonly position: number) {
    super(`${message} at position ${position}`)
    this.name = 'JsonSyntaxError'
  }
}

/** An error of the source itself (a file that cannot be read), not of its contents. */
export class SourceError extends Error {
  static name = 'SourceError'
  constructor (readonly cause: unknown) {
    super((cause as Error)?.message ?? String(cause))
    this.name = 'SourceError'
  }
}

const SPACE = 0x20
const TAB = 0x09
const LF = 0x0a
const CR = 0x0d
const BACKSLASH = 0x5c
/** JSON's structural characters, as bytes (export.ts reads an export's shape with them too). */
export const QUOTE = 0x22
export const OPEN_BRACE = 0x7b
export const CLOSE_BRACE = 0x7d
export const OPEN_BRACKET = 0x5b
export const CLOSE_BRACKET = 0x5d
export const COMMA = 0x2c
export const COLON = 0x3a

function isJsonSpace (c: number): boolean {
  return c === SPACE || c === LF || c === CR || c === TAB
}

/** Where a scalar (number, true, false, null) ends. */
function endsScalar (c: number): boolean {
  return isJsonSpace(c) || c === COMMA || c === CLOSE_BRACKET || c === CLOSE_BRACE || c === COLON
}

function shown (c: number): string {
  return JSON.stringify(String.fromCharCode(c))
}

export class TextReader {
  /** Text read but not yet dropped; `pos` is the next character to consume. */
  private buf = ''
  private pos = 0
  /** Characters dropped before buf[0]. */
  private base = 0
  private ended = false
  private readonly source: AsyncIterator<string | Uint8Array>
  private readonly decoder = new TextDecoder('utf-8', { ignoreBOM: true })

  constructor (source: AsyncIterable<string | Uint8Array> | Iterable<string | Uint8Array>) {
    this.source = Symbol.asyncIterator in source ? source[Symbol.asyncIterator]() : toAsync(source[Symbol.iterator]())
  }

  /** Characters consumed so far. */
  get position (): number {
    return this.base + this.pos
  }

  /**
   * Reads the next chunk, keeping buf from `keepFrom` on. Returns how far
   * indices into buf moved (subtract it), or -1 at the end of the text.
   */
  private async more (keepFrom: number): Promise<number> {
    while (!this.ended) {
      let next: IteratorResult<string | Uint8Array>
      try {
        next = await this.source.next()
      } catch (err) {
        throw new SourceError(err)
      }
      let text: string
      if (next.done === true) {
        this.ended = true
        text = this.decoder.decode()
      } else {
        text = typeof next.value === 'string' ? next.value : this.decoder.decode(next.value, { stream: true })
      }
      if (text === '') continue
      this.buf = this.buf.slice(keepFrom) + text
      this.base += keepFrom
      this.pos -= keepFrom
      return keepFrom
    }
    return -1
  }

  /** The next `n` characters (fewer at the end), without consuming them. */
  async peekText (n: number): Promise<string> {
    while (this.buf.length - this.pos < n && await this.more(this.pos) !== -1);
    return this.buf.slice(this.pos, this.pos + n)
  }

  /** Consumes `n` characters (fewer at the end). */
  async skip (n: number): Promise<void> {
    await this.peekText(n)
    this.pos = Math.min(this.pos + n, this.buf.length)
  }

  /** Consumes characters while `test` holds; returns the first other one (-1 at the end), not consumed. */
  async skipWhile (test: (c: number) => boolean): Promise<number> {
    while (true) {
      while (this.pos < this.buf.length) {
        const c = this.buf.charCodeAt(this.pos)
        if (!test(c)) return c
        this.pos++
      }
      if (await this.more(this.pos) === -1) return -1
    }
  }

  /**
   * The next line, without its "\n", and whether one ended it (the last
   * line of a text may have none); undefined at the end. "\r" stays: the
   * caller decides about CRLF.
   */
  async line (): Promise<{ text: string, terminated: boolean } | undefined> {
    let from = this.pos
    while (true) {
      const end = this.buf.indexOf('\n', from)
      if (end !== -1) {
        const text = this.buf.slice(this.pos, end)
        this.pos = end + 1
        return { text, terminated: true }
      }
      from = this.buf.length
      const moved = await this.more(this.pos)
      if (moved === -1) break
      from -= moved
    }
    if (this.pos === this.buf.length) return undefined
    const text = this.buf.slice(this.pos)
    this.pos = this.buf.length
    return { text, terminated: false }
  }

  // -------------------------------------------------------------------------
  // JSON

  /** Skips JSON white space; returns the next character (-1 at the end), not consumed. */
  async jsonPeek (): Promise<number> {
    return this.skipWhile(isJsonSpace)
  }

  /** Consumes `c` after white space, or throws a JsonSyntaxError saying what was expected. */
  async jsonExpect (c: number, what: string): Promise<void> {
    const got = await this.jsonPeek()
    if (got !== c) this.unexpected(got, what)
    this.pos++
  }

  /** Consumes one of `options` after white space and returns it, or throws. */
  async jsonOneOf (options: number[], what: string): Promise<number> {
    const got = await this.jsonPeek()
    if (!options.includes(got)) this.unexpected(got, what)
    this.pos++
    return got
  }

  unexpected (got: number, what: string): never {
    throw new JsonSyntaxError(got === -1 ? `unexpected end of JSON input, expected ${what}` : `unexpected ${shown(got)}, expected ${what}`, this.position)
  }

  /**
   * The next JSON value, parsed by JSON.parse from its text: the reader
   * only finds where it ends (strings and nesting), so what a value means,
   * and which values are valid, is exactly what JSON.parse says.
   */
  async jsonValue (): Promise<unknown> {
    await this.jsonPeek()
    const start = this.position
    const text = await this.valueText()
    try {
      return JSON.parse(text)
    } catch (err: any) {
      throw new JsonSyntaxError(`${err.message}, in the value that starts`, start)
    }
  }

  /** The text of the value at pos (after white space), consumed. */
  private async valueText (): Promise<string> {
    let start = this.pos
    let i = this.pos
    let depth = 0
    let inString = false
    const first = i < this.buf.length ? this.buf.charCodeAt(i) : -1
    if (first === -1 || first === COMMA || first === COLON || first === CLOSE_BRACE || first === CLOSE_BRACKET) this.unexpected(first, 'a value')
    const scalar = first !== QUOTE && first !== OPEN_BRACE && first !== OPEN_BRACKET
    while (true) {
      const buf = this.buf
      for (; i < buf.length; i++) {
        const c = buf.charCodeAt(i)
        if (inString) {
          if (c === BACKSLASH) {
            i++
            continue
          }
          if (c !== QUOTE) {
            // the next quote or backslash, at once: strings are most of an export
            const q = buf.indexOf('"', i)
            const b = buf.indexOf('\\', i)
            const next = q === -1 ? (b === -1 ? buf.length : b) : (b === -1 ? q : Math.min(q, b))
            i = next - 1
            continue
          }
          inString = false
          if (depth === 0) return this.take(start, i + 1)
        } else if (scalar) {
          if (endsScalar(c)) return this.take(start, i)
        } else if (c === QUOTE) {
          inString = true
        } else if (c === OPEN_BRACE || c === OPEN_BRACKET) {
          depth++
        } else if (c === CLOSE_BRACE || c === CLOSE_BRACKET) {
          depth--
          if (depth === 0) return this.take(start, i + 1)
        }
      }
      const moved = await this.more(start)
      if (moved === -1) {
        if (scalar) return this.take(start, i)
        throw new JsonSyntaxError('unexpected end of JSON input, in a value that starts', this.base + start)
      }
      start -= moved
      i -= moved
    }
  }

  private take (from: number, to: number): string {
    this.pos = to
    return this.buf.slice(from, to)
  }
}

async function * toAsync<T> (it: Iterator<T>): AsyncGenerator<T> {
  while (true) {
    const next = it.next()
    if (next.done === true) return
    yield next.value
  }
}
