/**
 * Graceful degradation: when no model can answer, a plot is still built from the project itself, on a
 * classic three-act frame (or a scene, or suggestions), deterministic for a given request and project.
 *
 * @since 0.1.0
 */
import * as Domain from "./Domain.js"

/**
 * The warning every template result carries: it says the content was generated from a template.
 *
 * @since 0.1.0
 * @category Warnings
 */
export const templateWarning =
  "This plot was generated from a template because the AI service was unavailable; regenerate it later for a richer result."

/** The cast a template needs, with stand-ins where the project has fewer people or places. */
interface Cast {
  readonly hero: string
  readonly rival: string
  readonly ally: string
  readonly places: ReadonlyArray<string>
  /** The project's place the request names, where a scene is set. */
  readonly namedPlace: string | undefined
  readonly thread: string
}

const roleScore = (character: Domain.Character, words: ReadonlyArray<string>): boolean =>
  words.some((word) => `${character.role ?? ""} ${character.description ?? ""}`.toLowerCase().includes(word))

const castOf = (request: Domain.PlotRequest, context: Domain.ProjectContext): Cast => {
  const characters = context.characters
  const hero = characters.find((c) => roleScore(c, ["protagonist", "hero", "heroine", "main"])) ?? characters[0]
  const rival = characters.find((c) => c !== hero && roleScore(c, ["antagonist", "villain", "rival", "enemy"])) ??
    characters.find((c) => c !== hero)
  const ally = characters.find((c) => c !== hero && c !== rival)
  const places = context.locations.map((l: Domain.Location) => l.name)
  const openThread = context.plotThreads.find((t) => t.status !== "resolved") ?? context.plotThreads[0]
  return {
    hero: hero?.name ?? "the protagonist",
    rival: rival?.name ?? "an unseen adversary",
    ally: ally?.name ?? "an unlikely ally",
    places: places.length > 0 ? places : ["the story's home ground"],
    namedPlace: placeNamedIn(request.userPrompt, places),
    // A question ("What happens next?") names no thread; a premise may stand for one.
    thread: openThread?.title ??
      (premiseOf(request.userPrompt) === defaultPremise ? defaultThread : request.userPrompt.slice(0, 120))
  }
}

/** A sentence that starts with a stand-in ("an unseen adversary strikes") still starts with a capital. */
const capitalised = (text: string) => text.charAt(0).toUpperCase() + text.slice(1)

const beat = (summary: string, characters: ReadonlyArray<string>, location: string) =>
  new Domain.PlotBeat({
    summary: capitalised(summary),
    characters: characters.filter((c) => !c.startsWith("the ") && !c.startsWith("an ")),
    location
  })

const threeActs = (cast: Cast, premise: string, place: (i: number) => string): Array<Domain.PlotAct> => [
  new Domain.PlotAct({
    title: "Setup",
    summary: capitalised(`${cast.hero}'s ordinary world is disturbed when ${premise}.`),
    beats: [
      beat(
        `We meet ${cast.hero} at ${place(0)}, holding together a life that is about to change.`,
        [cast.hero],
        place(0)
      ),
      beat(`An inciting event ties ${cast.hero} to "${cast.thread}".`, [cast.hero], place(1)),
      beat(
        `${cast.hero} refuses the call until ${cast.ally} shows what staying would cost.`,
        [cast.hero, cast.ally],
        place(1)
      ),
      beat(`${cast.hero} commits, and ${cast.rival} takes notice.`, [cast.hero, cast.rival], place(2))
    ]
  }),
  new Domain.PlotAct({
    title: "Confrontation",
    summary: capitalised(`${cast.hero} and ${cast.ally} push toward the truth while ${cast.rival} raises the stakes.`),
    beats: [
      beat(`${cast.hero} and ${cast.ally} follow the first lead to ${place(2)}.`, [cast.hero, cast.ally], place(2)),
      beat(`${cast.rival} strikes first; an early victory turns out to be a trap.`, [cast.rival, cast.hero], place(3)),
      beat(
        `At the midpoint a revelation about "${cast.thread}" changes what ${cast.hero} wants.`,
        [cast.hero],
        place(3)
      ),
      beat(`Everything falls apart: ${cast.ally} is lost or turns away, and ${cast.hero} stands alone.`, [
        cast.hero,
        cast.ally
      ], place(4))
    ]
  }),
  new Domain.PlotAct({
    title: "Resolution",
    summary: capitalised(`${cast.hero} faces ${cast.rival} and settles "${cast.thread}" at a price.`),
    beats: [
      beat(`${cast.hero} finds a new resolve in what the story has taught.`, [cast.hero], place(4)),
      beat(`The confrontation with ${cast.rival} at ${place(5)}.`, [cast.hero, cast.rival], place(5)),
      beat(
        `The aftermath: what ${cast.hero} kept, what was lost, and what comes next.`,
        [cast.hero, cast.ally],
        place(0)
      )
    ]
  })
]

/**
 * One scene, beat by beat, in one place: who comes in wanting what, who complicates it, the turn, the way out.
 * The scene's place is the one the request names, else the project's first.
 */
const sceneBeats = (cast: Cast, premise: string, place: (i: number) => string): Array<Domain.PlotAct> => {
  const where = cast.namedPlace ?? place(0)
  return [
    new Domain.PlotAct({
      title: `A reckoning at ${where}`,
      summary: capitalised(
        `At ${where}, ${cast.hero} meets ${cast.ally} as ${premise}; when ${cast.rival} arrives, the scene turns on "${cast.thread}".`
      ),
      beats: [
        beat(`Open at ${where}: ${cast.hero} arrives with a clear aim and little time.`, [cast.hero], where),
        beat(`${cast.ally} is already there, with news for ${cast.hero} that complicates the aim.`, [
          cast.hero,
          cast.ally
        ], where),
        beat(`${cast.hero} presses ${cast.ally}; an old tension between them surfaces in what neither says outright.`, [
          cast.hero,
          cast.ally
        ], where),
        beat(`${cast.rival} arrives, and ${cast.hero}'s talk with ${cast.ally} turns into a contest of wills.`, [
          cast.hero,
          cast.ally,
          cast.rival
        ], where),
        beat(
          `The turn: ${cast.rival} lets slip something about "${cast.thread}", and ${cast.hero} sees the scene for what it is.`,
          [
            cast.hero,
            cast.rival
          ],
          where
        ),
        beat(`${cast.hero} makes a choice and gives something up to act on it.`, [cast.hero], where),
        beat(`Close: ${cast.hero} leaves ${where} with a new aim, and ${cast.rival} with a reason to follow.`, [
          cast.hero,
          cast.rival
        ], where)
      ]
    })
  ]
}

/** Three distinct directions the story could take next, each a short arc: an opening move, a turn, a cost. */
const suggestions = (cast: Cast, _premise: string, place: (i: number) => string): Array<Domain.PlotAct> => [
  new Domain.PlotAct({
    title: "Raise the stakes",
    summary: capitalised(`${cast.rival} makes "${cast.thread}" personal, and ${cast.hero} must act before ready.`),
    beats: [
      beat(`${cast.rival} threatens what ${cast.hero} loves most, at ${place(0)}.`, [cast.rival, cast.hero], place(0)),
      beat(`${cast.hero} moves early and wins a first round, at a cost.`, [cast.hero], place(1)),
      beat(`${cast.ally} is drawn in, and the conflict can no longer stay private.`, [cast.hero, cast.ally], place(1))
    ]
  }),
  new Domain.PlotAct({
    title: "A hidden loyalty",
    summary: capitalised(`${cast.ally} has been keeping a secret about "${cast.thread}", and trust has to be rebuilt.`),
    beats: [
      beat(`${cast.hero} finds proof of the secret at ${place(1)}.`, [cast.hero], place(1)),
      beat(`${cast.ally} explains, and the reason is worse than the lie.`, [cast.ally, cast.hero], place(2)),
      beat(`${cast.hero} chooses whether to keep ${cast.ally} close or go on alone.`, [cast.hero, cast.ally], place(2))
    ]
  }),
  new Domain.PlotAct({
    title: "An unexpected alliance",
    summary: capitalised(`${cast.hero} and ${cast.rival} need each other for a while, and neither trusts the truce.`),
    beats: [
      beat(`A greater danger forces ${cast.hero} and ${cast.rival} together.`, [cast.hero, cast.rival], place(2)),
      beat(`Working side by side, ${cast.hero} sees what ${cast.rival} is after in "${cast.thread}".`, [
        cast.hero,
        cast.rival
      ], place(3)),
      beat(`The truce breaks at the worst moment.`, [cast.hero, cast.rival], place(3))
    ]
  })
]

const builders: Readonly<Record<Domain.ContentKind, typeof threeActs>> = {
  outline: threeActs,
  scene_beats: sceneBeats,
  suggestions
}

/** The title and logline of each kind: a story's, a scene's, or the choice the suggestions answer. */
const headingOf = (
  kind: Domain.ContentKind,
  cast: Cast,
  premise: string,
  acts: ReadonlyArray<Domain.PlotAct>,
  project: string
): { readonly title: string; readonly logline: string } => {
  switch (kind) {
    case "outline":
      return {
        title: `${project}: ${cast.thread}`,
        logline: `When ${premise}, ${cast.hero} must face ${cast.rival} to resolve "${cast.thread}".`
      }
    case "scene_beats":
      return {
        title: `${project}: ${acts[0]!.title}`,
        logline: capitalised(`${cast.hero} comes for one thing and leaves with another, as "${cast.thread}" turns.`)
      }
    case "suggestions":
      return {
        title: `${project}: where "${cast.thread}" could go next`,
        logline: capitalised(
          `three ways forward for ${cast.hero}, each a short arc: the stakes rise, a hidden loyalty comes out, or enemies become allies for a while.`
        )
      }
  }
}

/** Words that open a request to the writer's assistant ("Outline...", "What happens...?"), not a premise. */
const requestWords = new Set([
  "outline",
  "write",
  "suggest",
  "give",
  "describe",
  "plan",
  "draft",
  "create",
  "generate",
  "brainstorm",
  "break",
  "continue",
  "propose",
  "list",
  "show",
  "tell",
  "help",
  "please"
])

/** Stands in for the premise of a request that carries none ("What happens next?"). */
const defaultPremise = "an old debt comes due"

/** Stands in for the thread of a project that has none, when the request carries no premise either. */
const defaultThread = "the secret at the heart of the story"

/**
 * The request's premise as a clause: its first sentence, after any "Outline the next chapters:" lead-in,
 * lower-cased at the start, without its final stop. A question or a bare instruction is no premise.
 */
const premiseOf = (prompt: string): string => {
  const sentence = prompt.split(/(?<=[.!?])\s/)[0]!.trim()
  const colon = sentence.indexOf(":")
  const clause = (colon !== -1 && colon < 80 ? sentence.slice(colon + 1) : sentence).trim()
  const firstWord = clause.split(/\s/)[0]!.toLowerCase()
  if (clause.endsWith("?") || requestWords.has(firstWord)) return defaultPremise
  const short = clause.replace(/[.!]+$/, "").slice(0, 200)
  return short.length === 0 ? defaultPremise : short.charAt(0).toLowerCase() + short.slice(1)
}

/** The first of the project's places that the request names, if any: a scene asked for there is set there. */
const placeNamedIn = (prompt: string, places: ReadonlyArray<string>): string | undefined => {
  const lower = prompt.toLowerCase()
  return places.find((place) => lower.includes(place.toLowerCase().replace(/^the /, "")))
}

/**
 * Builds a template outline for a request over a project, shaped by the request's kind: a three-act outline, one
 * scene (one act) beat by beat, or three alternative directions (one act each).
 *
 * @since 0.1.0
 * @category Generating
 */
export const generate = (request: Domain.PlotRequest, context: Domain.ProjectContext): Domain.PlotOutline => {
  const cast = castOf(request, context)
  const place = (i: number) => cast.places[i % cast.places.length]!
  const kind = request.kind ?? "outline"
  const premise = premiseOf(request.userPrompt)
  const acts = builders[kind](cast, premise, place)
  const { logline, title } = headingOf(kind, cast, premise, acts, context.title ?? cast.hero)
  return new Domain.PlotOutline({ title: capitalised(title).slice(0, 200), logline: logline.slice(0, 1_000), acts })
}
