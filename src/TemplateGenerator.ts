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
    thread: openThread?.title ?? request.userPrompt.slice(0, 120)
  }
}

const beat = (summary: string, characters: ReadonlyArray<string>, location: string) =>
  new Domain.PlotBeat({
    summary,
    characters: characters.filter((c) => !c.startsWith("the ") && !c.startsWith("an ")),
    location
  })

const threeActs = (cast: Cast, premise: string, place: (i: number) => string): Array<Domain.PlotAct> => [
  new Domain.PlotAct({
    title: "Setup",
    summary: `${cast.hero}'s ordinary world is disturbed when ${premise}.`,
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
    summary: `${cast.hero} and ${cast.ally} push toward the truth while ${cast.rival} raises the stakes.`,
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
    summary: `${cast.hero} faces ${cast.rival} and settles "${cast.thread}" at a price.`,
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

const sceneBeats = (cast: Cast, premise: string, place: (i: number) => string): Array<Domain.PlotAct> => [
  new Domain.PlotAct({
    title: "Scene",
    summary: `A scene in which ${premise}.`,
    beats: [
      beat(`Open at ${place(0)}: ${cast.hero} arrives with a clear goal.`, [cast.hero], place(0)),
      beat(`${cast.ally} brings news that complicates the goal.`, [cast.hero, cast.ally], place(0)),
      beat(`${cast.rival}'s presence is felt; the tension turns into conflict.`, [cast.hero, cast.rival], place(0)),
      beat(`A choice: ${cast.hero} gives something up to move forward.`, [cast.hero], place(0)),
      beat(`Close on a turn that points to "${cast.thread}".`, [cast.hero], place(0))
    ]
  })
]

const suggestions = (cast: Cast, premise: string, place: (i: number) => string): Array<Domain.PlotAct> => [
  new Domain.PlotAct({
    title: "Raise the stakes",
    summary: `${cast.rival} makes the cost of "${cast.thread}" personal.`,
    beats: [
      beat(`${cast.rival} threatens what ${cast.hero} loves most.`, [cast.rival, cast.hero], place(0)),
      beat(`${cast.hero} must act before ready.`, [cast.hero], place(1))
    ]
  }),
  new Domain.PlotAct({
    title: "A hidden loyalty",
    summary: `${cast.ally} has been keeping a secret about ${premise}.`,
    beats: [
      beat(`${cast.hero} finds proof of the secret at ${place(1)}.`, [cast.hero], place(1)),
      beat(`${cast.ally} explains, and trust has to be rebuilt.`, [cast.ally, cast.hero], place(2))
    ]
  }),
  new Domain.PlotAct({
    title: "An unexpected alliance",
    summary: `${cast.hero} and ${cast.rival} need each other for a while.`,
    beats: [
      beat(`A greater danger forces ${cast.hero} and ${cast.rival} together.`, [cast.hero, cast.rival], place(2)),
      beat(`The truce breaks at the worst moment.`, [cast.hero, cast.rival], place(3))
    ]
  })
]

const builders: Readonly<Record<Domain.ContentKind, typeof threeActs>> = {
  outline: threeActs,
  scene_beats: sceneBeats,
  suggestions
}

/**
 * The request's premise as a clause: its first sentence, after any "Outline the next chapters:" lead-in,
 * lower-cased at the start, without its final stop.
 */
const premiseOf = (prompt: string): string => {
  const sentence = prompt.split(/(?<=[.!?])\s/)[0]!.trim()
  const colon = sentence.indexOf(":")
  const clause = (colon !== -1 && colon < 80 ? sentence.slice(colon + 1) : sentence).trim().replace(/[.!?]+$/, "")
  const short = clause.slice(0, 200)
  return short.length === 0 ? "something changes" : short.charAt(0).toLowerCase() + short.slice(1)
}

/**
 * Builds a template outline for a request over a project.
 *
 * @since 0.1.0
 * @category Generating
 */
export const generate = (request: Domain.PlotRequest, context: Domain.ProjectContext): Domain.PlotOutline => {
  const cast = castOf(request, context)
  const place = (i: number) => cast.places[i % cast.places.length]!
  const kind = request.kind ?? "outline"
  const acts = builders[kind](cast, premiseOf(request.userPrompt), place)
  const title = context.title === undefined ? `${cast.hero}: ${cast.thread}` : `${context.title}: ${cast.thread}`
  return new Domain.PlotOutline({
    title: title.slice(0, 200),
    logline: `When ${premiseOf(request.userPrompt)}, ${cast.hero} must face ${cast.rival} to resolve "${cast.thread}".`
      .slice(
        0,
        1_000
      ),
    acts
  })
}
