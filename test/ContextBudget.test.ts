import { describe, expect, it } from "@effect/vitest"
import * as Arbitrary from "effect/Arbitrary"
import * as FastCheck from "effect/FastCheck"
import * as ContextBudget from "../src/ContextBudget.js"
import { Character, ContentExcerpt, Location, PlotThread, ProjectContext, WorldNote } from "../src/Domain.js"
import * as TokenCount from "../src/TokenCount.js"
import { sampleProject } from "./utils/fixtures.js"

const count = TokenCount.estimateTokens

const items = <A>(schema: Parameters<typeof Arbitrary.make<A, any, never>>[0], max: number) =>
  FastCheck.array(Arbitrary.make(schema), { maxLength: max })

/** Contexts from tiny to far larger than the budgets below, built from the schemas' own arbitraries. */
const contexts: FastCheck.Arbitrary<ProjectContext> = FastCheck.record({
  characters: items(Character, 12),
  plotThreads: items(PlotThread, 8),
  locations: items(Location, 8),
  worldBuilding: items(WorldNote, 8),
  previousContent: FastCheck.array(
    FastCheck.record({
      title: FastCheck.constantFrom("Chapter 1", "Chapter 2", "Interlude"),
      text: FastCheck.lorem({ maxCount: 400, mode: "sentences" })
    }).map((e) => new ContentExcerpt(e)),
    { maxLength: 20 }
  )
}).map((fields) => new ProjectContext(fields))

const budgets = FastCheck.integer({ min: 600, max: 12_000 })

/**
 * The priority order, stated here rather than read from `ContextBudget.sections` (the thing under test): kept
 * longest first, cut first last.
 */
const priorityOrder = ["characters", "plotThreads", "locations", "worldBuilding", "previousContent"] as const

/** The position of every kept item in the priority order, and of every cut one. */
const priorityPositions = (original: ProjectContext, fitted: ProjectContext) => {
  const keptPositions: Array<number> = []
  const cutPositions: Array<number> = []
  let position = 0
  for (const section of priorityOrder) {
    const all: ReadonlyArray<unknown> = original[section]
    const order = section === "previousContent" ? [...all.keys()].reverse() : [...all.keys()]
    const kept = fitted[section] as ReadonlyArray<unknown>
    for (const index of order) {
      const item = all[index]
      // An item kept unchanged is the same object; a trimmed one counts as cut.
      if (kept.includes(item)) keptPositions.push(position)
      else cutPositions.push(position)
      position++
    }
  }
  return { keptPositions, cutPositions }
}

/** Fits `context` into `budget` and checks that every item kept comes before every item cut, in priority order. */
const expectCutsBelowKept = (context: ProjectContext, budget: number) => {
  const { cutPositions, keptPositions } = priorityPositions(context, ContextBudget.fit(context, budget, count).context)
  if (cutPositions.length > 0 && keptPositions.length > 0) {
    expect(Math.max(...keptPositions)).toBeLessThan(Math.min(...cutPositions))
  }
}

describe("ContextBudget.fit properties", () => {
  it("stays within the budget for any context", () => {
    FastCheck.assert(
      FastCheck.property(contexts, budgets, (context, budget) => {
        expect(ContextBudget.fit(context, budget, count).tokens).toBeLessThanOrEqual(budget)
      }),
      { numRuns: 150 }
    )
  })

  it("never keeps a lower-priority item while a higher-priority one was cut", () => {
    FastCheck.assert(
      FastCheck.property(contexts, budgets, (context, budget) => expectCutsBelowKept(context, budget)),
      { numRuns: 150 }
    )
  })

  it("never keeps a lower-priority item while a higher-priority one was cut, wherever the budget cuts", () => {
    // A budget anywhere between nothing and the whole context, so that the cut falls in every section, not mostly
    // among the chapters (which are the bulk of a random context).
    FastCheck.assert(
      FastCheck.property(contexts, FastCheck.double({ min: 0, max: 1, noNaN: true }), (context, share) => {
        expectCutsBelowKept(context, Math.floor(share * ContextBudget.measure(context, count)))
      }),
      { numRuns: 150 }
    )
  })

  it("changes nothing when fitted twice", () => {
    FastCheck.assert(
      FastCheck.property(contexts, budgets, (context, budget) => {
        const once = ContextBudget.fit(context, budget, count)
        const twice = ContextBudget.fit(once.context, budget, count)
        expect(twice.context).toEqual(once.context)
        expect(twice.warnings).toEqual([])
      }),
      { numRuns: 100 }
    )
  })

  it("uses at least 90 % of the budget when the context is larger", () => {
    FastCheck.assert(
      FastCheck.property(contexts, budgets, (context, budget) => {
        const fitted = ContextBudget.fit(context, budget, count)
        if (fitted.originalTokens > budget) expect(fitted.tokens).toBeGreaterThanOrEqual(0.9 * budget)
      }),
      { numRuns: 150 }
    )
  })
})

describe("ContextBudget priority order", () => {
  it("lists the sections from the highest priority to the lowest", () => {
    expect(ContextBudget.sections).toEqual(priorityOrder)
  })

  // One item per section, each about 100 tokens. A budget of the header plus the first k items (in the stated
  // order) keeps exactly those k and drops the rest, whole: nothing is left over to trim.
  const one = new ProjectContext({
    title: "The Lighthouse",
    characters: [new Character({ name: "Mara", description: "A keeper who counts the steps. ".repeat(12) })],
    plotThreads: [new PlotThread({ title: "The missing log", summary: "Pages torn from the log. ".repeat(12) })],
    locations: [new Location({ name: "The lamp room", description: "Glass and brass and salt. ".repeat(12) })],
    worldBuilding: [new WorldNote({ topic: "The fog", details: "It comes in from the north. ".repeat(12) })],
    previousContent: [new ContentExcerpt({ title: "Chapter 1", text: "The fog rolled in at dusk. ".repeat(12) })]
  })
  const empty = new ProjectContext({
    title: one.title,
    characters: [],
    plotThreads: [],
    locations: [],
    worldBuilding: [],
    previousContent: []
  })
  const header = ContextBudget.measure(empty, count)
  const tokensOf = (section: typeof priorityOrder[number]) =>
    ContextBudget.measure(new ProjectContext({ ...empty, [section]: one[section] }), count) - header

  it.each([0, 1, 2, 3, 4])("with room for the first %i sections, keeps those and drops the rest", (k) => {
    const budget = header + priorityOrder.slice(0, k).reduce((sum, section) => sum + tokensOf(section), 0)
    const fitted = ContextBudget.fit(one, budget, count)
    expect(fitted.trimmed).toBeUndefined()
    expect(fitted.dropped).toEqual(Object.fromEntries(priorityOrder.map((section, i) => [section, i < k ? 0 : 1])))
  })
})

describe("ContextBudget.fit", () => {
  const chapters = Array.from(
    { length: 40 },
    (_, i) => new ContentExcerpt({ title: `Chapter ${i + 1}`, text: "The fog rolled in. ".repeat(2_000) })
  )
  const huge = new ProjectContext({ ...sampleProject, previousContent: chapters })

  it("returns a context that fits unchanged, with no warnings", () => {
    const fitted = ContextBudget.fit(sampleProject, 100_000, count)
    expect(fitted.context).toBe(sampleProject)
    expect(fitted.warnings).toEqual([])
  })

  it("cuts the oldest chapters first and keeps every character, thread and location", () => {
    const fitted = ContextBudget.fit(huge, 16_000, count)
    expect(fitted.context.characters).toEqual(sampleProject.characters)
    expect(fitted.context.plotThreads).toEqual(sampleProject.plotThreads)
    expect(fitted.context.locations).toEqual(sampleProject.locations)
    const titles = fitted.context.previousContent.map((c) => c.title)
    expect(titles.at(-1)).toBe("Chapter 40")
    expect(titles).not.toContain("Chapter 1")
    expect(fitted.dropped.previousContent).toBe(40 - titles.length)
    expect(fitted.warnings[0]).toMatch(
      /^The project context was cut to fit 16000 tokens: dropped \d+ of 40 previous chapters; shortened "Chapter \d+"\.$/
    )
  })

  it("keeps the end of a shortened chapter, the part nearest to what comes next", () => {
    const fitted = ContextBudget.fit(huge, 16_000, count)
    const shortened = fitted.context.previousContent[0]!
    expect(shortened.text.startsWith("[…] ")).toBe(true)
    expect(shortened.text.endsWith(chapters[0]!.text.slice(-40))).toBe(true)
  })

  it("counts with the real tokenizer too", () => {
    const tokens = TokenCount.openAiCount("gpt-4o")
    const fitted = ContextBudget.fit(huge, 16_000, tokens)
    expect(fitted.tokens).toBeLessThanOrEqual(16_000)
    expect(fitted.tokens).toBeGreaterThanOrEqual(14_400)
  })
})

describe("ContextBudget counting", () => {
  it("caches counts of unchanged texts", () => {
    let calls = 0
    const counter = TokenCount.cached((text) => {
      calls++
      return count(text)
    })
    ContextBudget.measure(sampleProject, counter.count)
    const first = calls
    ContextBudget.measure(sampleProject, counter.count)
    expect(calls).toBe(first)
    expect(counter.tokenized()).toBe(first)
  })

  it("evicts the least recently used past its capacity", () => {
    const counter = TokenCount.cached(count, 2)
    counter.count("a")
    counter.count("b")
    counter.count("a")
    counter.count("c")
    counter.count("a")
    counter.count("b")
    expect(counter.tokenized()).toBe(4)
  })

  it("maps OpenAI models onto the encoding gpt-tokenizer knows", () => {
    expect(TokenCount.encodingModel({ provider: "openai", id: "gpt-4.1" })).toBe("gpt-4o")
    expect(TokenCount.encodingModel({ provider: "openai", id: "gpt-5" })).toBe("gpt-4o")
    expect(TokenCount.encodingModel({ provider: "openai", id: "gpt-4" })).toBe("gpt-4")
    expect(TokenCount.encodingModel({ provider: "openai", id: "gpt-4-turbo-preview" })).toBe("gpt-4")
    expect(TokenCount.encodingModel({ provider: "openai", id: "gpt-3.5-turbo" })).toBe("gpt-3.5-turbo")
    expect(TokenCount.encodingModel({ provider: "anthropic", id: "claude-sonnet-4-5" })).toBe("gpt-4o")
    expect(TokenCount.openAiCount("gpt-4o")("Mara climbed the hundred and twelve steps.")).toBeGreaterThan(5)
  })
})

describe("ContextBudget budgets", () => {
  it("never exceeds the model's window minus the reply and the rest of the prompt", () => {
    expect(ContextBudget.budgetFor({ contextWindow: 200_000 }, { maxOutputTokens: 4_000, promptTokens: 1_000 })).toBe(
      32_000
    )
    expect(ContextBudget.budgetFor({ contextWindow: 16_385 }, { maxOutputTokens: 4_096, promptTokens: 1_000 })).toBe(
      11_289
    )
    expect(
      ContextBudget.budgetFor({ contextWindow: 200_000 }, {
        maxOutputTokens: 4_000,
        promptTokens: 1_000,
        maxContextTokens: 8_000
      })
    )
      .toBe(8_000)
  })

  it("gives the retry after a context-length rejection strictly less than was sent", () => {
    expect(ContextBudget.reducedBudget({ sentContextTokens: 30_000, promptTokens: 1_000, maxOutputTokens: 4_000 }))
      .toBe(15_000)
    // The provider said the model takes 16,385: 16,385 - 4,000 - 1,000 = 11,385 is smaller than half.
    expect(
      ContextBudget.reducedBudget({
        sentContextTokens: 30_000,
        promptTokens: 1_000,
        maxOutputTokens: 4_000,
        maxContextTokens: 16_385
      })
    ).toBe(11_385)
    expect(ContextBudget.reducedBudget({ sentContextTokens: 1, promptTokens: 0, maxOutputTokens: 0 })).toBe(0)
  })
})
