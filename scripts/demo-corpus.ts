// The demo model's pretraining corpus: short, simple stories produced by a seeded grammar, so the
// whole demo (corpus → tokenizer → pretrained weights) is reproducible from this repository alone.
// Deterministic: the same seed gives the same bytes on every machine (Philox stream, no Math.random).
import { randomU32, uniform24 } from '../src/util/rng';

const NAMES = ['Mia', 'Tom', 'Lily', 'Sam', 'Ben', 'Anna', 'Max', 'Sue', 'Tim', 'Zoe', 'Leo', 'Ella'];
const ANIMALS = ['cat', 'dog', 'bird', 'fish', 'rabbit', 'duck', 'frog', 'horse', 'bear', 'mouse'];
const THINGS = ['ball', 'kite', 'hat', 'book', 'box', 'cake', 'boat', 'car', 'drum', 'shell', 'toy', 'cup'];
const COLOURS = ['red', 'blue', 'green', 'yellow', 'pink', 'big', 'small', 'shiny', 'little', 'new'];
const PLACES = ['the park', 'the garden', 'the beach', 'the forest', 'the farm', 'the river', 'the hill', 'school', 'the town'];
const FEELINGS = ['happy', 'sad', 'scared', 'tired', 'excited', 'proud', 'surprised', 'sleepy'];
const VERBS = ['play', 'run', 'jump', 'sing', 'dance', 'swim', 'read', 'draw', 'climb', 'hide'];
const WEATHER = ['The sun was warm.', 'It was a rainy day.', 'The wind was strong.', 'The sky was blue.', 'It was cold and grey.'];

class Pick {
  private i = 0;
  constructor(private readonly seed: number) {}
  next(): number {
    return uniform24(randomU32(this.seed, this.i++, 1)[0]);
  }
  of<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)];
  }
}

function story(p: Pick): string {
  const n = p.of(NAMES);
  const friend = p.of(NAMES.filter((x) => x !== n));
  const he = 'Tom Sam Ben Max Tim Leo'.includes(n) ? 'He' : 'She';
  const his = he === 'He' ? 'his' : 'her';
  const animal = p.of(ANIMALS);
  const thing = p.of(THINGS);
  const colour = p.of(COLOURS);
  const place = p.of(PLACES);
  const verb = p.of(VERBS);
  const s: string[] = [];
  s.push(p.of([`Once upon a time, there was a little ${he === 'He' ? 'boy' : 'girl'} named ${n}.`, `${n} was a kind child who lived near ${place}.`, `One day, ${n} went to ${place}.`]));
  s.push(p.of([`${he} had a ${colour} ${thing}.`, `${he} loved to ${verb} with ${his} ${animal}.`, `${he} liked to ${verb} every morning.`]));
  s.push(p.of(WEATHER));
  s.push(p.of([
    `${n} saw a ${animal} by the tree. The ${animal} looked ${p.of(FEELINGS)}.`,
    `${n} met ${friend} at ${place}. They wanted to ${verb} together.`,
    `Then ${n} lost ${his} ${thing}. ${he} was very ${p.of(FEELINGS)}.`,
  ]));
  s.push(p.of([
    `"Can I ${verb} with you?" asked ${friend}. "Yes!" said ${n}.`,
    `${friend} helped ${n} find the ${thing} under a bush.`,
    `The ${animal} came closer, and ${n} gave it some food.`,
  ]));
  s.push(p.of([
    `At the end of the day, ${n} went home and felt ${p.of(FEELINGS)}.`,
    `They played until the sun went down. It was the best day ever.`,
    `${n} smiled and said, "I love ${place}!"`,
  ]));
  return s.join(' ');
}

/** `count` stories, one per line, from the seed. */
export function demoCorpus(count = 3000, seed = 2026): string {
  const p = new Pick(seed);
  const out: string[] = [];
  for (let i = 0; i < count; i++) out.push(story(p));
  return `${out.join('\n')}\n`;
}
