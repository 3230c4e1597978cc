/**
 * The simulator's writer: plausible plot text and JSON built from the characters, places and threads named
 * in a prompt, deterministic for a given prompt and seed. Where the request carries a JSON schema, the output
 * conforms to it, shaped as the kind of content the prompt asks for: an outline's acts, one scene's beats, or
 * alternative directions.
 *
 * @since 0.1.0
 */
import * as o200k from "gpt-tokenizer/encoding/o200k_base"
import * as Json from "../internal/json.js"

// =============================================================================
// Randomness
// =============================================================================

/** FNV-1a over a string: a stable 32-bit seed. */
export const hash = (text: string, seed = 0x811c9dc5): number => {
  let h = seed >>> 0
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/**
 * mulberry32: a small, fast, seedable generator of numbers in [0, 1).
 *
 * @since 0.1.0
 */
export const generator = (seed: number) => {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

// =============================================================================
// What the prompt names
// =============================================================================

/**
 * The people, places and threads a prompt names.
 *
 * @since 0.1.0
 */
export interface Cast {
  readonly characters: ReadonlyArray<string>
  readonly places: ReadonlyArray<string>
  readonly threads: ReadonlyArray<string>
}

/** The text of the JSON array that follows `"key": [`, or undefined. */
const arrayAfterKey = (text: string, keys: ReadonlyArray<string>): string | undefined => {
  for (const key of keys) {
    const match = new RegExp(`"${key}"\\s*:\\s*\\[`).exec(text)
    if (match === null) continue
    const start = match.index + match[0].length - 1
    const end = Json.closingIndex(text, start)
    if (end !== -1) return text.slice(start, end + 1)
  }
  return undefined
}

const unescapeJsonString = (raw: string): string => {
  try {
    return JSON.parse(`"${raw}"`) as string
  } catch {
    return raw
  }
}

const fieldValues = (segment: string | undefined, field: string, limit: number): Array<string> => {
  if (segment === undefined) return []
  const out: Array<string> = []
  for (const match of segment.matchAll(new RegExp(`"${field}"\\s*:\\s*"((?:[^"\\\\]|\\\\.){1,160})"`, "g"))) {
    const value = unescapeJsonString(match[1]!).trim()
    if (value !== "" && !out.includes(value)) out.push(value)
    if (out.length >= limit) break
  }
  return out
}

const stopWords = new Set([
  "The",
  "A",
  "An",
  "And",
  "But",
  "Or",
  "In",
  "On",
  "At",
  "To",
  "Of",
  "For",
  "With",
  "From",
  "By",
  "As",
  "It",
  "He",
  "She",
  "They",
  "We",
  "You",
  "I",
  "This",
  "That",
  "These",
  "Those",
  "When",
  "While",
  "After",
  "Before",
  "Write",
  "Aim",
  "Respond",
  "Use",
  "Never",
  "Keep",
  "JSON",
  "Schema",
  "Both",
  "Their",
  "His",
  "Her",
  "Act",
  "Chapter",
  "What",
  "How"
])

/** Capitalised phrases, for prompts that carry no structured project data. */
const properNouns = (text: string, limit: number): Array<string> => {
  const out: Array<string> = []
  for (const match of text.matchAll(/\b([A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)\b/g)) {
    const words = match[1]!.split(/\s+/).filter((w) => !stopWords.has(w))
    const phrase = words.join(" ")
    if (phrase.length > 2 && !out.includes(phrase)) out.push(phrase)
    if (out.length >= limit) break
  }
  return out
}

/**
 * Reads the cast out of a prompt: JSON arrays named like characters, locations and plot threads when the
 * prompt carries project data, else its capitalised names.
 *
 * @since 0.1.0
 */
export const castOf = (prompt: string): Cast => {
  const characters = fieldValues(arrayAfterKey(prompt, ["characters", "cast"]), "name", 12)
  const places = fieldValues(arrayAfterKey(prompt, ["locations", "places", "settings"]), "name", 12)
  const threads = fieldValues(arrayAfterKey(prompt, ["plotThreads", "threads", "plot_threads"]), "title", 8)
  const nouns = characters.length === 0 || places.length === 0 ? properNouns(prompt, 8) : []
  return {
    characters: characters.length > 0
      ? characters
      : nouns.length > 0
      ? nouns.slice(0, 4)
      : ["the narrator", "a stranger"],
    places: places.length > 0
      ? places
      : nouns.length > 4
      ? nouns.slice(4)
      : ["the old town", "the harbour", "the road north"],
    threads: threads.length > 0 ? threads : ["the secret at the heart of the story"]
  }
}

// =============================================================================
// Sentences
// =============================================================================

const beatTemplates: ReadonlyArray<string> = [
  "{a} arrives at {p} and finds the first sign that {t} is not what it seemed.",
  "At {p}, {a} confronts {b}, and neither leaves the argument unchanged.",
  "{b} offers {a} a bargain that would settle {t}, at a price {a} cannot yet see.",
  "{a} follows a rumour to {p}, where {b} is waiting with a warning.",
  "A storm traps {a} and {b} at {p}, and old loyalties are tested.",
  "{a} uncovers a letter that ties {b} to {t}.",
  "{b} betrays {a} at {p}, and the plan falls apart.",
  "{a} chooses to protect {b} instead of finishing the search, and loses the lead on {t}.",
  "In the quiet after the chase, {a} and {b} admit what they each want from {t}.",
  "{a} returns to {p} to face what was left behind.",
  "{b} reveals the truth about {t}, and {a} must decide whom to believe.",
  "The night market at {p} hides a meeting between {b} and an old enemy of {a}.",
  "{a} makes a sacrifice at {p} that turns the course of {t}.",
  "{a} and {b} stand together at {p} as the consequences of {t} arrive."
]

const actTemplates: ReadonlyArray<string> = [
  "{a} is drawn into {t} when an ordinary day at {p} goes wrong.",
  "The search for answers drives {a} and {b} apart as {t} deepens.",
  "Everything {a} has learned is tested in a final reckoning with {b} at {p}.",
  "{a} and {b} must choose between safety and the truth of {t}.",
  "Old debts come due at {p}, and {a} can no longer stay neutral."
]

const titleTemplates: ReadonlyArray<string> = [
  "The {P} Reckoning",
  "Shadows over {P}",
  "What {A} Kept",
  "The Last Light of {P}",
  "A Debt at {P}",
  "{A} and the Tide"
]

/** A thread title inside a sentence: "The cracked lens" reads as "the cracked lens". */
const midSentence = (phrase: string) => phrase.replace(/^(The|A|An) /, (article) => article.toLowerCase())

// =============================================================================
// Kinds of content
// =============================================================================

/**
 * What a prompt asks for: a plot outline, the beats of one scene, or alternative directions for the story.
 *
 * @since 0.1.0
 */
export type Kind = "outline" | "scene_beats" | "suggestions"

/**
 * The kind of content a prompt asks for: the `"kind"` of the writer's request it carries (the last one, as the
 * request follows the project data), else an outline.
 *
 * @since 0.1.0
 */
export const kindAskedFor = (prompt: string): Kind => {
  let kind: Kind = "outline"
  for (const match of prompt.matchAll(/"kind"\s*:\s*"(outline|scene_beats|suggestions)"/g)) kind = match[1] as Kind
  return kind
}

/** The writer's own words in a prompt (the last `"prompt"` string of its request data), or "". */
const requestText = (prompt: string): string => {
  let text = ""
  for (const match of prompt.matchAll(/"prompt"\s*:\s*"((?:[^"\\]|\\.){0,2000})"/g)) {
    text = unescapeJsonString(match[1]!)
  }
  return text
}

/** What the writers of each kind draw with. */
interface Tools {
  readonly cast: Cast
  readonly pick: <A>(items: ReadonlyArray<A>) => A
  readonly int: (min: number, max: number) => number
  readonly shuffle: <A>(items: ReadonlyArray<A>) => Array<A>
}

/** The parts of a plot as one kind writes them. */
interface Parts {
  readonly size: (words: number) => Size
  readonly title: () => string
  readonly logline: () => string
  readonly groupTitle: (group: number) => string
  readonly groupSummary: (group: number) => string
  readonly leafSummary: (group: number, leaf: number, leaves: number, sentences: number) => string
  readonly character: () => string
  readonly place: () => string
}

/** Fisher-Yates over a copy, with the writer's seeded randomness. */
const shuffled = <A>(items: ReadonlyArray<A>, random: () => number): Array<A> => {
  const out = [...items]
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    ;[out[i], out[j]] = [out[j]!, out[i]!]
  }
  return out
}

/**
 * A template with its `{names}` filled from `values` (a value may hold names of its own, filled in turn), as a
 * sentence: capitalised.
 */
const expand = (template: string, values: Readonly<Record<string, string>>): string => {
  let text = template
  for (let pass = 0; pass < 3 && text.includes("{"); pass++) {
    text = text.replace(/\{(\w+)\}/g, (whole, name: string) => values[name] ?? whole)
  }
  return text.charAt(0).toUpperCase() + text.slice(1)
}

/** The named values every template of a kind may use: people `a`, `b`, `c` (and first names), a place, a thread. */
const bindings = (people: ReadonlyArray<string>, place: string, thread: string) => {
  const [a = "the narrator", b = "a stranger", c = b] = people
  return {
    a,
    b,
    c,
    A: a.split(" ")[0]!,
    B: b.split(" ")[0]!,
    p: place,
    t: midSentence(thread)
  }
}

/**
 * Up to `count` people of the cast: those the writer's words name, in the order named, then the cast in its order (a
 * project lists its main characters first, and a scene is about them unless the writer says otherwise).
 */
const peopleFor = (cast: Cast, named: string, count: number): Array<string> => {
  // Where the words name someone, by full name or first name ("Mara confronts Elias"), or -1.
  const at = (name: string) => {
    const full = named.toLowerCase().indexOf(name.toLowerCase())
    if (full !== -1) return full
    const firstName = name.split(" ")[0]!
    if (!/^\p{L}{2,}$/u.test(firstName)) return -1
    const first = new RegExp(`(?<!\\p{L})${firstName}(?!\\p{L})`, "u").exec(named)
    return first === null ? -1 : first.index
  }
  const mentioned = cast.characters.filter((c) => at(c) !== -1).sort((x, y) => at(x) - at(y))
  return [...mentioned, ...cast.characters.filter((c) => !mentioned.includes(c))].slice(0, count)
}

/** The first place of the cast the writer's words name, ignoring a leading "the"; else one at random. */
const placeFor = (tools: Tools, named: string): string => {
  const lower = named.toLowerCase()
  return tools.cast.places.find((p) => lower.includes(p.toLowerCase().replace(/^the /, ""))) ??
    tools.pick(tools.cast.places)
}

// -----------------------------------------------------------------------------
// One scene, beat by beat
// -----------------------------------------------------------------------------

const sceneTitles: ReadonlyArray<string> = [
  "The Reckoning at {p}",
  "What {A} Heard at {p}",
  "A Warning at {p}",
  "The Bargain at {p}",
  "{A} and {B} at {p}",
  "The Last Hour at {p}",
  "A Visitor at {p}",
  "The Confession at {p}"
]

const sceneLoglines: ReadonlyArray<string> = [
  "At {p}, {a} comes for one thing and leaves with another, as {t} turns.",
  "{a} and {b} meet at {p}, and by the end of the scene {t} can no longer stay hidden.",
  "One conversation at {p} changes what {a} knows about {t}."
]

/** What the scene's point-of-view character came for. */
const sceneGoals: ReadonlyArray<string> = [
  "to ask {b} about {t}",
  "to settle what {t} has cost",
  "to warn {b} before it is too late",
  "to find proof of {t}",
  "to make {b} keep a promise"
]

const sceneObstacles: ReadonlyArray<string> = [
  "{b} wants something else entirely",
  "{b} is hiding what they know",
  "{b} has already chosen a side",
  "{b} tries to send {a} away"
]

/** What turns the scene: a phrase for its summary, the beat that shows it. `c` is a third person, when there is one. */
const sceneTurns: ReadonlyArray<{ readonly phrase: string; readonly beat: string; readonly third?: true }> = [
  {
    phrase: "{c} arrives with news of {t}",
    beat: "The turn: {c} arrives at {p} with news of {t}, and the balance between {a} and {b} breaks.",
    third: true
  },
  {
    phrase: "{b} lets slip what only someone close to {t} could know",
    beat: "The turn: {b} lets slip a detail only someone close to {t} could know, and {a} hears it."
  },
  {
    phrase: "{a} finds what {b} hid at {p}",
    beat: "The turn: {a} finds what {b} hid at {p}, and the argument is over."
  },
  {
    phrase: "{b} tells the truth about {t}",
    beat: "The turn: {b} tells {a} the truth about {t}, and it is worse than the lie."
  }
]

const sceneOpenings: ReadonlyArray<string> = [
  "{a} arrives at {p} {goal}, and finds {b} already there.",
  "The scene opens at {p}: {a} waits for {b}, rehearsing what to say about {t}.",
  "{a} steps into {p} {goal} and sees {b} before {b} sees {a}."
]

/** The middle of a scene, in the order its pressure rises: a scene takes some of them, in this order. */
const sceneMiddles: ReadonlyArray<string> = [
  "{b} greets {a} too warmly and steers the talk away from {t}.",
  "{a} notices something out of place at {p} and says nothing yet.",
  "{a} asks the question directly; {b} answers a different one.",
  "{b} laughs at the question about {t}, a moment too late.",
  "{b} asks {a} who else knows, and {a} lies.",
  "{a} lays out what is known so far and watches {b} for a flinch.",
  "The talk turns sharp when {a} mentions {t}.",
  "{a} tells {b} what {t} has done to the people at {p}.",
  "{b} admits a small part of the truth to protect a larger part.",
  "{a} remembers an old kindness of {b}'s and hesitates.",
  "A sound outside makes {b} glance at the door, and {a} sees the fear in it.",
  "{a} presses harder, naming what {t} has already cost.",
  "{b} turns the accusation back on {a}.",
  "{a} brings out the one thing {b} cannot explain away.",
  "{b} makes an offer: silence about {t} in exchange for {a}'s help.",
  "{b} offers {a} a way out that would cost nothing tonight.",
  "{a} refuses, and for a moment neither {a} nor {b} moves.",
  "Neither {a} nor {b} will leave first, and the silence at {p} stretches."
]

/** A middle beat in which the scene's third person passes through. */
const sceneInterruption = "{c} looks in on them, and {a} and {b} fall silent until {c} has gone."

const sceneCloses: ReadonlyArray<string> = [
  "{a} leaves {p} with a new aim, and {b} with a reason to follow.",
  "The scene ends at {p} with {a} alone, certain now of what {t} means.",
  "{a} and {b} part without a word, each holding half of the truth about {t}."
]

/** Sentences that carry a beat on in its own moment, for longer beats. */
const sceneDetails: ReadonlyArray<string> = [
  "Neither of them says what both are thinking, and the moment passes.",
  "{b} does not look away, and that is an answer of a kind.",
  "Outside {p}, the night goes on as if nothing has changed.",
  "For a moment {a} almost believes it, and hates the feeling.",
  "It is not the answer {a} came for, but it is an answer.",
  "{b} chooses each word with care, as if someone else were listening.",
  "The silence says more than either of them is willing to.",
  "{a} files the detail away, to be turned over later.",
  "Somewhere in {p} a door closes, and both of them hear it.",
  "{a} keeps both hands still and waits for {b} to go on.",
  "{b} looks older than {a} remembers.",
  "The cold of {p} gets into everything, the words included.",
  "{a} hears the lie and lets it stand, for now.",
  "It is the closest {b} has come to an apology.",
  "{a} counts the exits without meaning to.",
  "Neither of them mentions the last time they were here."
]

/**
 * The scene: one place (the one the writer's words name, else one at random), two or three people (those the
 * words name first), a goal, an obstacle and a turn, told in beats that open, press, turn and close.
 */
const sceneParts = (tools: Tools, named: string): Parts => {
  const people = peopleFor(tools.cast, named, 3)
  const values = bindings(people, placeFor(tools, named), tools.pick(tools.cast.threads))
  const turn = tools.pick(sceneTurns.filter((t) => t.third === undefined || people.length >= 3))
  const scene = {
    ...values,
    goal: tools.pick(sceneGoals),
    obstacle: tools.pick(sceneObstacles),
    turn: turn.phrase
  }
  const name = tools.pick(sceneTitles)
  // A random few of the middles, kept in their rising order; a scene with more beats than middles goes round again.
  const middlesFor = (count: number): Array<string> =>
    count >= sceneMiddles.length
      ? Array.from({ length: count }, (_, i) => sceneMiddles[i % sceneMiddles.length]!)
      : tools.shuffle(sceneMiddles.map((_, i) => i)).slice(0, count).sort((x, y) => x - y).map((i) => sceneMiddles[i]!)
  let middles: Array<string> = []
  const details = tools.shuffle(sceneDetails)
  let nextDetail = 0
  const moment = (leaf: number, leaves: number): string =>
    leaf === 0
      ? tools.pick(sceneOpenings)
      : leaf === leaves - 1
      ? tools.pick(sceneCloses)
      : leaf === leaves - 2
      ? turn.beat
      : middles[leaf - 1] ?? sceneMiddles[0]!
  return {
    size: (words) => {
      // About 40 words a beat, past the 60 of the title, logline and summary: a scene of 600 words is a dozen beats
      // of two sentences, not twenty one-liners; past the schema's 40 beats, the beats grow longer.
      const leaves = Math.max(4, Math.min(40, Math.round((words - 60) / 40)))
      return { groups: 1, leaves, sentences: 1 + Math.max(0, Math.round(((words - 60) / leaves - 26) / 12)) }
    },
    // The outline's title is the scene's, as the prompt asks.
    title: () => expand(name, scene),
    logline: () => expand(tools.pick(sceneLoglines), scene),
    groupTitle: () => expand(name, scene),
    groupSummary: () => expand("{a} comes to {p} {goal}, but {obstacle}; the scene turns when {turn}.", scene),
    leafSummary: (_group, leaf, leaves, sentences) => {
      if (leaf === 0) {
        middles = middlesFor(Math.max(0, leaves - 3))
        // A third person the turn leaves out still passes through the scene: the scene has three people.
        if (people.length >= 3 && turn.third === undefined && middles.length > 0) {
          middles[tools.int(Math.floor(middles.length / 2), middles.length - 1)] = sceneInterruption
        }
      }
      const said = [expand(moment(leaf, leaves), scene)]
      // The turn and the close stand alone: a detail after them would blur them.
      const more = leaf >= leaves - 2 ? 0 : sentences - 1
      for (let i = 0; i < more; i++) said.push(expand(details[nextDetail++ % details.length]!, scene))
      return said.join(" ")
    },
    // Everyone in the scene is one of its people, in its place.
    character: () => tools.pick(people.length > 0 ? people : [scene.a]),
    place: () => scene.p
  }
}

// -----------------------------------------------------------------------------
// Alternative directions
// -----------------------------------------------------------------------------

/** A direction the story could take: its name, what would happen, and its short arc (opening, two turns, outcome). */
interface Direction {
  readonly title: string
  readonly summary: string
  readonly steps: readonly [string, string, string, string]
}

const directions: ReadonlyArray<Direction> = [
  {
    title: "Raise the Stakes",
    summary: "{b} makes {t} personal, and {a} must act before ready; the danger stops being abstract.",
    steps: [
      "{b} threatens what {a} holds dearest, at {p}.",
      "{a} moves early and wins a first round, at a cost.",
      "The cost lands on someone {a} cannot abandon.",
      "{a} faces {b} at {p} with nothing left to bargain."
    ]
  },
  {
    title: "A Hidden Loyalty",
    summary: "{b} has been keeping a secret about {t}; trust has to be rebuilt, or broken for good.",
    steps: [
      "{a} finds proof of {b}'s secret at {p}.",
      "{b} explains to {a}, and the reason is worse than the lie.",
      "{a} hides the truth from everyone else, for now.",
      "{a} chooses whether to keep {b} close or go on alone."
    ]
  },
  {
    title: "An Uneasy Alliance",
    summary: "{a} and {b} need each other for a while against a greater danger, and neither trusts the truce.",
    steps: [
      "A greater danger at {p} forces {a} and {b} together.",
      "Working side by side, {a} learns what {b} wants from {t}.",
      "Together {a} and {b} win what neither could alone.",
      "The truce between {a} and {b} breaks at the worst moment."
    ]
  },
  {
    title: "The Secret Comes Out",
    summary: "The truth about {t} reaches {p} before {a} is ready, and everyone has to take a side.",
    steps: [
      "Word of {t} spreads through {p}, and {a} is named in it.",
      "{b} uses the uproar to move against {a}.",
      "{a} has to answer for the part of {t} that {a} hid.",
      "{a} tells the whole truth, and loses something by it."
    ]
  },
  {
    title: "Flight to {p}",
    summary: "{a} leaves for {p} to get away from {t}, and finds it waiting there.",
    steps: [
      "{a} slips away to {p} without telling {b}.",
      "At {p}, a stranger tells {a} more about {t} than a stranger should know.",
      "{b} follows {a}, with reasons of their own.",
      "{a} turns back to face {t} rather than run again."
    ]
  },
  {
    title: "A Price to Pay",
    summary: "{a} could end {t} at once by giving up what matters most, and {b} is the one asking.",
    steps: [
      "{b} names to {a} the price of ending {t}.",
      "{a} weighs it alone at {p}.",
      "{a} pays, and the bill is larger than {b} promised.",
      "What {a} gave up comes back to haunt {a}."
    ]
  },
  {
    title: "The Wrong Suspect",
    summary: "{a} becomes sure that {b} is behind {t}, and is wrong; the real culprit gains ground.",
    steps: [
      "A clue at {p} points {a} to {b}.",
      "{a} confronts {b} in front of everyone.",
      "While {a} accuses {b}, the real culprit slips away.",
      "{a} must make amends to {b} to go on."
    ]
  },
  {
    title: "{A} Walks Away",
    summary: "{a} turns away from {t}, and the story shows what that costs everyone else.",
    steps: [
      "{a} refuses to go on, and says so at {p}.",
      "{b} takes up what {a} left behind.",
      "Without {a}, {t} grows worse.",
      "{a} comes back, on new terms."
    ]
  }
]

/** Sentences that say why a step matters, for longer steps. */
const stepDetails: ReadonlyArray<string> = [
  "It would put {b} in {a}'s debt, and both of them know it.",
  "It brings {t} into the open sooner than anyone planned.",
  "It shows the reader what {a} fears most.",
  "It costs {a} an ally, at least for a while.",
  "It leaves a thread the ending can pull on.",
  "It gives {b} a reason to act, and a reason to wait.",
  "It changes what {a} wants from {t}.",
  "It raises the price of failure for everyone at {p}."
]

const suggestionTitles: ReadonlyArray<string> = [
  "Where the Story Turns Next",
  "Three Roads from {p}",
  "What {A} Does Next",
  "Crossroads at {p}"
]

/**
 * Three distinct directions, each with its own focus, people, place and thread, each told as a short arc: the
 * steps of its direction (an opening, the turns that fit, its outcome).
 */
const suggestionParts = (tools: Tools): Parts => {
  // The options answer one open thread, each in its own way: its own focus, among the main characters in turn, with
  // someone else of the cast against or beside them, in its own place.
  const thread = tools.pick(tools.cast.threads)
  const whole = bindings(tools.cast.characters.slice(0, 2), tools.pick(tools.cast.places), thread)
  const main = tools.cast.characters.slice(0, 3)
  const options = tools.shuffle(directions).map((direction, index) => {
    const focus = main[index % main.length]!
    const others = tools.cast.characters.filter((c) => c !== focus)
    const people = [focus, others.length > 0 ? tools.pick(others) : "a stranger"]
    return { direction, values: bindings(people, tools.pick(tools.cast.places), thread) }
  })
  const option = (group: number) => options[group % options.length]!
  const details = tools.shuffle(stepDetails)
  let nextDetail = 0
  return {
    size: (words) => {
      // Three options of two to four steps: a longer piece has longer steps, not more of them.
      const perOption = Math.max(0, words / 3 - 25)
      const leaves = Math.max(2, Math.min(4, Math.round(perOption / 35)))
      return { groups: 3, leaves, sentences: 1 + Math.max(0, Math.round((perOption / leaves - 20) / 11)) }
    },
    title: () => expand(tools.pick(suggestionTitles), whole),
    logline: () =>
      expand(
        "Three ways the story could go from here, each a short arc for {a}, and each a different answer to {t}.",
        whole
      ),
    groupTitle: (group) => expand(option(group).direction.title, option(group).values),
    groupSummary: (group) => expand(option(group).direction.summary, option(group).values),
    leafSummary: (group, leaf, leaves, sentences) => {
      const { direction, values } = option(group)
      // The opening and the outcome always; the turns between as many as fit.
      const step = leaf === leaves - 1 ? 3 : Math.min(leaf, 2)
      const said = [expand(direction.steps[step], values)]
      for (let i = 1; i < sentences; i++) said.push(expand(details[nextDetail++ % details.length]!, values))
      return said.join(" ")
    },
    character: () => tools.pick(tools.cast.characters),
    place: () => tools.pick(tools.cast.places)
  }
}

/**
 * How a kind of content is sized for a length in words: its groups (acts), the leaves (beats) of each, and the
 * sentences of a leaf.
 *
 * @since 0.1.0
 */
export interface Size {
  readonly groups: number
  readonly leaves: number
  readonly sentences: number
}

/**
 * A deterministic writer over a cast. The parts of a plot (`title`, `logline`, a group's title and summary, a
 * leaf's summary) are written as the kind the prompt asks for reads them: acts and their beats, one scene beat by
 * beat, or alternative directions and their steps.
 *
 * @since 0.1.0
 */
export interface Writer {
  readonly cast: Cast
  readonly kind: Kind
  readonly pick: <A>(items: ReadonlyArray<A>) => A
  readonly int: (min: number, max: number) => number
  readonly beat: () => string
  readonly actSummary: () => string
  readonly title: () => string
  readonly logline: () => string
  readonly character: () => string
  readonly place: () => string
  readonly size: (words: number) => Size
  /** The title of a group (an act, the scene, an alternative), counted from 0. */
  readonly groupTitle: (group: number) => string
  readonly groupSummary: (group: number) => string
  /** The summary of leaf `leaf` (from 0) of `leaves` in a group: a beat of an act or the scene, a step of an arc. */
  readonly leafSummary: (group: number, leaf: number, leaves: number, sentences: number) => string
}

/**
 * A writer seeded by the prompt and a seed: the same prompt and seed give the same text.
 *
 * @since 0.1.0
 */
export const makeWriter = (prompt: string, seed: number): Writer => {
  const cast = castOf(prompt)
  const random = generator(hash(prompt, seed))
  const pick = <A>(items: ReadonlyArray<A>): A => items[Math.floor(random() * items.length)]!
  const int = (min: number, max: number) => min + Math.floor(random() * (max - min + 1))
  const two = () => {
    const a = pick(cast.characters)
    const others = cast.characters.filter((c) => c !== a)
    return { a, b: others.length > 0 ? pick(others) : "a stranger" }
  }
  const fill = (template: string) => {
    const { a, b } = two()
    const sentence = template
      .replaceAll("{a}", a)
      .replaceAll("{b}", b)
      .replaceAll("{p}", pick(cast.places))
      .replaceAll("{t}", midSentence(pick(cast.threads)))
      .replaceAll("{A}", a.split(" ")[0]!)
      .replaceAll("{P}", pick(cast.places).replace(/^the /i, ""))
    return sentence.charAt(0).toUpperCase() + sentence.slice(1)
  }
  const tools: Tools = { cast, pick, int, shuffle: (items) => shuffled(items, random) }
  const beat = () => fill(pick(beatTemplates))
  const actSummary = () => fill(pick(actTemplates))
  const title = () => fill(pick(titleTemplates))
  const logline = () => fill("When {t} threatens everything at {p}, {a} must trust {b} to see it through.")
  // An outline's summaries, an act's and a beat's alike, are either kind of sentence, at random.
  const summary = () => int(0, 1) === 0 ? actSummary() : beat()
  const outline: Parts = {
    size: (words) => ({ groups: 3, leaves: Math.max(2, Math.round(words / 3 / 32)), sentences: 1 }),
    title,
    logline,
    groupTitle: title,
    groupSummary: summary,
    leafSummary: summary,
    character: () => pick(cast.characters),
    place: () => pick(cast.places)
  }
  const kind = kindAskedFor(prompt)
  const parts = kind === "scene_beats"
    ? sceneParts(tools, requestText(prompt))
    : kind === "suggestions"
    ? suggestionParts(tools)
    : outline
  return {
    cast,
    kind,
    pick,
    int,
    beat,
    actSummary,
    title: parts.title,
    logline: parts.logline,
    character: parts.character,
    place: parts.place,
    size: parts.size,
    groupTitle: parts.groupTitle,
    groupSummary: parts.groupSummary,
    leafSummary: parts.leafSummary
  }
}

/**
 * Prose paragraphs of about `words` words.
 *
 * @since 0.1.0
 */
export const prose = (writer: Writer, words: number): string => {
  const paragraphs: Array<string> = []
  let count = 0
  while (count < words) {
    const sentences = Array.from({ length: writer.int(3, 5) }, () => writer.beat())
    const paragraph = sentences.join(" ")
    paragraphs.push(paragraph)
    count += paragraph.split(/\s+/).length
  }
  return paragraphs.join("\n\n")
}

// =============================================================================
// JSON schema
// =============================================================================

type JsonSchema = {
  readonly $ref?: string
  readonly $defs?: Record<string, JsonSchema>
  readonly definitions?: Record<string, JsonSchema>
  readonly type?: string | ReadonlyArray<string>
  readonly properties?: Record<string, JsonSchema>
  readonly items?: JsonSchema
  readonly minItems?: number
  readonly maxItems?: number
  readonly minLength?: number
  readonly maxLength?: number
  readonly minimum?: number
  readonly maximum?: number
  readonly enum?: ReadonlyArray<unknown>
  readonly const?: unknown
  readonly anyOf?: ReadonlyArray<JsonSchema>
  readonly oneOf?: ReadonlyArray<JsonSchema>
  readonly allOf?: ReadonlyArray<JsonSchema>
}

const isSchema = (u: unknown): u is JsonSchema => typeof u === "object" && u !== null && !Array.isArray(u)

/** Where a value sits in a plot: in which group (act) and leaf (beat), counted from 0; neither at the top. */
interface Position {
  readonly group?: number
  readonly leaf?: number
  readonly leaves?: number
}

/** The most levels of nesting followed, so that a recursive schema cannot loop. */
const maxDepth = 12

/**
 * A value that conforms to a JSON schema, its strings written from the cast by property name (title, logline,
 * summary, characters, location...), and its arrays of leaf objects sized so that the whole is about `words`.
 *
 * @since 0.1.0
 */
export const fromSchema = (root: unknown, writer: Writer, words: number): unknown => {
  const schemaRoot = isSchema(root) ? root : {}
  const definitions = { ...schemaRoot.definitions, ...schemaRoot.$defs }
  const resolve = (schema: JsonSchema): JsonSchema => {
    let current = schema
    for (let i = 0; i < maxDepth && current.$ref !== undefined; i++) {
      // JSON pointer escapes: `~1` is "/", `~0` is "~".
      const name = current.$ref.replace(/^#\/(\$defs|definitions)\//, "").replaceAll("~1", "/").replaceAll("~0", "~")
      current = current.$ref === "#" ? schemaRoot : definitions[name] ?? {}
    }
    if (current.allOf !== undefined) {
      const { allOf, ...rest } = current
      return allOf.reduce<JsonSchema>((acc, part) => {
        const resolved = resolve(part)
        return { ...acc, ...resolved, properties: { ...acc.properties, ...resolved.properties } }
      }, rest)
    }
    return current
  }
  /** Does an item schema hold arrays of objects (an act holds beats), rather than being a leaf (a beat)? */
  const holdsObjects = (schema: JsonSchema): boolean =>
    Object.values(resolve(schema).properties ?? {}).some((p) => {
      const property = resolve(p)
      return property.type === "array" && resolve(property.items ?? {}).properties !== undefined
    })
  // The kind decides how many groups (acts) there are, and how many leaves (beats) of how many sentences share the
  // words.
  const size = writer.size(words)
  /** Properties that refer to people or places: filled last, from the names the object's own text mentions. */
  const isReference = (key: string) => /character|who|location|place|setting/i.test(key)

  const clip = (value: string, schema: JsonSchema): string => {
    const max = schema.maxLength ?? Infinity
    const clipped = value.length > max ? value.slice(0, max) : value
    return clipped.length < (schema.minLength ?? 0) ? clipped.padEnd(schema.minLength ?? 0, ".") : clipped
  }

  const text = (key: string, schema: JsonSchema, mentioned: string, at: Position): string => {
    const lower = key.toLowerCase()
    if (/location|place|setting/.test(lower)) {
      return clip(writer.cast.places.find((p) => mentioned.includes(p)) ?? writer.place(), schema)
    }
    if (/character|who/.test(lower) || lower === "name") return clip(writer.character(), schema)
    const value = lower.includes("title")
      ? at.group !== undefined && at.leaf === undefined ? writer.groupTitle(at.group) : writer.title()
      : lower.includes("logline") || lower.includes("premise")
      ? writer.logline()
      : lower.includes("summary")
      ? at.leaf !== undefined
        ? writer.leafSummary(at.group ?? 0, at.leaf, at.leaves ?? 1, size.sentences)
        : writer.groupSummary(at.group ?? 0)
      : writer.beat()
    return clip(value, schema)
  }

  const names = (key: string, item: JsonSchema, count: number, mentioned: string): Array<string> => {
    // The people the text names, when it names any; otherwise a few of the cast.
    const inText = /character|who/i.test(key) ? writer.cast.characters.filter((c) => mentioned.includes(c)) : []
    const values = new Set(inText.slice(0, Math.max(count, inText.length)).map((name) => clip(name, item)))
    if (values.size > 0) return [...values]
    for (let i = 0; values.size < count && i < count * 4; i++) values.add(text(key, item, mentioned, {}))
    return [...values]
  }

  const go = (key: string, raw: JsonSchema, depth: number, mentioned: string, at: Position): unknown => {
    const schema = resolve(raw)
    if (schema.const !== undefined) return schema.const
    if (schema.enum !== undefined && schema.enum.length > 0) return writer.pick(schema.enum)
    const alternatives = schema.anyOf ?? schema.oneOf
    if (alternatives !== undefined) {
      const nonNull = alternatives.find((a) => resolve(a).type !== "null") ?? alternatives[0] ?? {}
      return go(key, nonNull, depth, mentioned, at)
    }
    const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== "null") : schema.type
    if (depth > maxDepth) return type === "array" ? [] : type === "object" ? {} : null
    switch (type) {
      case "object":
      case undefined: {
        if (type === undefined && schema.properties === undefined) return text(key, schema, mentioned, at)
        const entries = Object.entries(schema.properties ?? {})
        const out: Record<string, unknown> = {}
        for (const [name, property] of entries.filter(([name]) => !isReference(name))) {
          out[name] = go(name, property, depth + 1, "", at)
        }
        const ownText = JSON.stringify(out)
        for (const [name, property] of entries.filter(([name]) => isReference(name))) {
          out[name] = go(name, property, depth + 1, ownText, at)
        }
        // Keep the schema's property order.
        return Object.fromEntries(entries.map(([name]) => [name, out[name]]))
      }
      case "array": {
        const item = resolve(schema.items ?? {})
        const itemType = Array.isArray(item.type) ? item.type[0] : item.type
        const groups = holdsObjects(item)
        const wanted = itemType === "string"
          ? writer.int(1, Math.min(3, writer.cast.characters.length))
          : groups
          ? size.groups
          : size.leaves
        const count = Math.max(schema.minItems ?? 0, Math.min(schema.maxItems ?? Infinity, wanted))
        const singular = key.replace(/s$/, "")
        if (itemType === "string") return names(key, item, count, mentioned)
        return Array.from({ length: count }, (_, index) =>
          go(
            singular,
            item,
            depth + 1,
            mentioned,
            groups
              ? { group: index }
              : item.properties === undefined
              ? at
              : { group: at.group ?? 0, leaf: index, leaves: count }
          ))
      }
      case "string":
        return text(key, schema, mentioned, at)
      case "integer":
        return writer.int(Math.ceil(schema.minimum ?? 1), Math.floor(schema.maximum ?? 10))
      case "number":
        return (schema.minimum ?? 0) + ((schema.maximum ?? 1) - (schema.minimum ?? 0)) / 2
      case "boolean":
        return writer.int(0, 1) === 1
      case "null":
        return null
      default:
        return null
    }
  }
  return go("root", schemaRoot, 0, "", {})
}

/**
 * The JSON schema a prompt asks the reply to match (a text that contains `{"$schema": ...}`), if any.
 *
 * @since 0.1.0
 */
export const schemaInPrompt = (prompt: string): unknown => {
  const start = prompt.indexOf("{\"$schema\"")
  const end = start === -1 ? -1 : Json.closingIndex(prompt, start)
  if (end === -1) return undefined
  try {
    return JSON.parse(prompt.slice(start, end + 1))
  } catch {
    return undefined
  }
}

/**
 * How many words a prompt asks for ("about 800 words"), if it says.
 *
 * @since 0.1.0
 */
export const wordsAskedFor = (prompt: string): number | undefined => {
  const match = /about (\d{2,6}) words/i.exec(prompt)
  return match === null ? undefined : Number(match[1])
}

/**
 * The tokens of a text as the simulated gateway bills them: the o200k encoding of current OpenAI models, for
 * both dialects (Claude's own tokenizer is not public).
 *
 * @since 0.1.0
 */
export const countTokens = (text: string): number => o200k.countTokens(text)
