// Writes crates/core/tests/fixtures/tokenizer/gpt2.json: GPT-2 token ids of a fixed multilingual
// text as js-tiktoken (an independent implementation with GPT-2's ranks bundled) produces them.
// The ids are committed; this script is how they were made: `node scripts/gpt2-fixture.mjs`.
import * as fs from 'node:fs';
import { getEncoding } from 'js-tiktoken';

const enc = getEncoding('gpt2');
const texts = [
  'Hello, world! The quick brown fox jumps over the lazy dog.',
  "It's 2024; they'll say we've done 3.14159 things, and I'd agree — don't you?",
  '日本語のテキストと中文文本，还有한국어 텍스트.',
  'Emoji: 🎭🦀👩‍👩‍👧‍👦 and flags 🇫🇷🇯🇵, accents: café naïve Ærøskøbing Ελληνικά Русский',
  'Whitespace   runs\t\ttabs\n\n\nnewlines    \n  trailing spaces   ',
  'code: fn main() { println!("{}", 1_000_000 + 0x1F); }   // done\r\n',
  '<|endoftext|> is ordinary text when encoded without special tokens',
];
const cases = texts.map((text) => ({ text, ids: Array.from(enc.encode(text, [], [])) }));
// Decoding bytes that are not UTF-8: the first half of an emoji's tokens, and lone byte tokens.
const emoji = enc.encode('🎭', [], []);
const decodes = [
  Array.from(emoji.slice(0, 1)),
  [enc.encode('A', [], [])[0], 255, enc.encode('B', [], [])[0]],
  [50256],
].map((ids) => ({ ids, text: enc.decode(ids) }));
const out = { tool: 'js-tiktoken 1.0.21, getEncoding("gpt2")', vocab: 50257, cases, decodes };
// One case per line, so a changed id shows in a diff next to its text.
const lines = (xs) => xs.map((x) => `  ${JSON.stringify(x)}`).join(',\n');
const json = `{"tool": ${JSON.stringify(out.tool)}, "vocab": ${out.vocab},\n "cases": [\n${lines(cases)}\n ],\n "decodes": [\n${lines(decodes)}\n ]\n}\n`;
fs.writeFileSync('crates/core/tests/fixtures/tokenizer/gpt2.json', json);
