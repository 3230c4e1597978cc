/**
 * Making the project context fit a model: measure its tokens, then cut it by priority (previous chapters first,
 * the oldest first, then world notes, then locations; characters and plot threads last), item by item, trimming
 * the one item that straddles the budget so that the budget is used well.
 *
 * Counts come from a `TokenCount.Count`; what a count makes of an (immutable) item or context is remembered, so
 * repeated generations over a project neither render nor tokenize it again.
 *
 * @since 0.1.0
 */
import * as Domain from "./Domain.js"
import type * as ModelCatalog from "./ModelCatalog.js"
import * as PromptBuilder from "./PromptBuilder.js"
import type * as TokenCount from "./TokenCount.js"

// =============================================================================
// Measuring
// =============================================================================

/**
 * The parts of a context, from the highest priority (kept longest) to the lowest (cut first).
 *
 * @since 0.1.0
 * @category Measuring
 */
export const sections = ["characters", "plotThreads", "locations", "worldBuilding", "previousContent"] as const

/**
 * @since 0.1.0
 * @category Measuring
 */
export type Section = typeof sections[number]

/** JSON punctuation between items of an array, per item. */
const itemOverhead = 2

/** The title, genre and synopsis, which are always kept (they are short and bounded). */
const headerText = (context: Domain.ProjectContext) =>
  PromptBuilder.asData({ title: context.title, genre: context.genre, synopsis: context.synopsis })

/**
 * Items and contexts are immutable, so what a count makes of one is remembered for as long as both live:
 * a warm request over the same project measures and fits it without rendering or hashing its text again.
 */
const itemMemo = new WeakMap<TokenCount.Count, WeakMap<object, number>>()
const measureMemo = new WeakMap<TokenCount.Count, WeakMap<Domain.ProjectContext, number>>()
const fitMemo = new WeakMap<TokenCount.Count, WeakMap<Domain.ProjectContext, Map<number, Fitted>>>()

const memoOf = <K extends object, V extends object>(memo: WeakMap<K, V>, key: K, make: () => V): V => {
  let value = memo.get(key)
  if (value === undefined) {
    value = make()
    memo.set(key, value)
  }
  return value
}

const itemTokens = (item: object, count: TokenCount.Count) => {
  const memo = memoOf(itemMemo, count, () => new WeakMap<object, number>())
  let tokens = memo.get(item)
  if (tokens === undefined) {
    tokens = count(PromptBuilder.asData(item)) + itemOverhead
    memo.set(item, tokens)
  }
  return tokens
}

/**
 * The tokens a context takes in a prompt, as this module measures it (each item's JSON counted alone).
 *
 * @since 0.1.0
 * @category Measuring
 */
export const measure = (context: Domain.ProjectContext, count: TokenCount.Count): number => {
  const memo = memoOf(measureMemo, count, () => new WeakMap<Domain.ProjectContext, number>())
  let total = memo.get(context)
  if (total === undefined) {
    total = count(headerText(context))
    for (const section of sections) for (const item of context[section]) total += itemTokens(item, count)
    memo.set(context, total)
  }
  return total
}

// =============================================================================
// Fitting
// =============================================================================

/**
 * A fitted context and what was cut.
 *
 * @since 0.1.0
 * @category Fitting
 */
export interface Fitted {
  readonly context: Domain.ProjectContext
  readonly tokens: number
  readonly originalTokens: number
  /** How many items of each section were dropped. */
  readonly dropped: Readonly<Record<Section, number>>
  /** The item that was shortened to use the last of the budget, if any. */
  readonly trimmed: string | undefined
  /** What was cut, for the result's warnings (empty when nothing was). */
  readonly warnings: ReadonlyArray<string>
}

type Item = Domain.Character | Domain.PlotThread | Domain.Location | Domain.WorldNote | Domain.ContentExcerpt

/** The item's label, for warnings. */
const labelOf = (item: Item): string =>
  item instanceof Domain.Character || item instanceof Domain.Location
    ? item.name
    : item instanceof Domain.WorldNote
    ? item.topic
    : item.title

/** The long text field of an item, which trimming shortens; chapters keep their end, the rest their start. */
const trimField = (
  item: Item
): { readonly text: string; readonly keepEnd: boolean; readonly with: (text: string) => Item } => {
  if (item instanceof Domain.Character) {
    return {
      text: item.description ?? "",
      keepEnd: false,
      with: (description) => new Domain.Character({ ...item, description })
    }
  }
  if (item instanceof Domain.PlotThread) {
    return {
      text: item.summary ?? "",
      keepEnd: false,
      with: (summary) => new Domain.PlotThread({ ...item, summary })
    }
  }
  if (item instanceof Domain.Location) {
    return {
      text: item.description ?? "",
      keepEnd: false,
      with: (description) => new Domain.Location({ ...item, description })
    }
  }
  if (item instanceof Domain.WorldNote) {
    return {
      text: item.details,
      keepEnd: false,
      with: (details) => new Domain.WorldNote({ ...item, details })
    }
  }
  return { text: item.text, keepEnd: true, with: (text) => new Domain.ContentExcerpt({ ...item, text }) }
}

/** A trimmed item is only worth keeping with at least this many tokens of its text. */
const minTrimmedTextTokens = 16

/**
 * Shortens an item's long text so that the item takes at most `budget` tokens, or `undefined` when even a
 * short version does not fit. The cut is estimated from the text's token density, then tightened.
 */
const trim = (item: Item, budget: number, count: TokenCount.Count): Item | undefined => {
  const field = trimField(item)
  const bare = itemTokens(field.with(""), count)
  const textBudget = budget - bare - 2
  if (textBudget < minTrimmedTextTokens || field.text.length === 0) return undefined
  const density = field.text.length / Math.max(1, count(field.text))
  let length = Math.min(field.text.length - 1, Math.floor(textBudget * density))
  for (let attempt = 0; attempt < 12 && length > 0; attempt++) {
    const text = field.keepEnd
      ? `[…] ${field.text.slice(field.text.length - length)}`
      : `${field.text.slice(0, length)} […]`
    const candidate = field.with(text)
    const tokens = itemTokens(candidate, count)
    if (tokens <= budget) return candidate
    length = Math.floor(length * Math.min(0.97, budget / tokens))
  }
  return undefined
}

const noneDropped: Record<Section, number> = {
  characters: 0,
  plotThreads: 0,
  locations: 0,
  worldBuilding: 0,
  previousContent: 0
}

const describeCut = (
  original: Domain.ProjectContext,
  dropped: Record<Section, number>,
  trimmed: string | undefined,
  budget: number
) => {
  const names: Record<Section, string> = {
    characters: "characters",
    plotThreads: "plot threads",
    locations: "locations",
    worldBuilding: "world notes",
    previousContent: "previous chapters"
  }
  const parts = sections
    .filter((s) => dropped[s] > 0)
    .map((s) => `${dropped[s]} of ${original[s].length} ${names[s]}`)
  const what = [
    ...(parts.length > 0 ? [`dropped ${parts.join(", ")}`] : []),
    ...(trimmed === undefined ? [] : [`shortened "${trimmed}"`])
  ].join("; ")
  return `The project context was cut to fit ${budget} tokens: ${what}.`
}

/**
 * Cuts a context to at most `maxTokens` (as `measure` counts): items are kept by priority (characters, plot
 * threads, locations, world notes, then previous chapters from the most recent back) while they fit; the first
 * that does not is shortened to fill what is left, and everything after it is dropped. A context that fits is
 * returned unchanged, so fitting twice changes nothing.
 *
 * @since 0.1.0
 * @category Fitting
 */
export const fit = (context: Domain.ProjectContext, maxTokens: number, count: TokenCount.Count): Fitted => {
  const memo = memoOf(memoOf(fitMemo, count, () => new WeakMap()), context, () => new Map<number, Fitted>())
  let fitted = memo.get(maxTokens)
  if (fitted === undefined) {
    fitted = fitUncached(context, maxTokens, count)
    memo.set(maxTokens, fitted)
  }
  return fitted
}

const fitUncached = (context: Domain.ProjectContext, maxTokens: number, count: TokenCount.Count): Fitted => {
  const originalTokens = measure(context, count)
  if (originalTokens <= maxTokens) {
    return { context, tokens: originalTokens, originalTokens, dropped: noneDropped, trimmed: undefined, warnings: [] }
  }
  const kept: Record<Section, Array<Item | undefined>> = {
    characters: [],
    plotThreads: [],
    locations: [],
    worldBuilding: [],
    previousContent: []
  }
  let remaining = maxTokens - count(headerText(context))
  let trimmed: string | undefined
  let full = remaining < 0
  for (const section of sections) {
    const items: ReadonlyArray<Item> = context[section]
    kept[section] = items.map(() => undefined)
    // The most recent chapters matter most for what comes next.
    const order = section === "previousContent" ? items.map((_, i) => items.length - 1 - i) : items.map((_, i) => i)
    for (const index of order) {
      if (full) break
      const item = items[index]!
      const tokens = itemTokens(item, count)
      if (tokens <= remaining) {
        kept[section][index] = item
        remaining -= tokens
        continue
      }
      const shortened = trim(item, remaining, count)
      if (shortened !== undefined) {
        kept[section][index] = shortened
        remaining -= itemTokens(shortened, count)
        trimmed = labelOf(item)
      }
      full = true
    }
  }
  const keep = <A extends Item>(section: Section) => kept[section].filter((item): item is A => item !== undefined)
  const fitted = new Domain.ProjectContext({
    ...context,
    characters: keep<Domain.Character>("characters"),
    plotThreads: keep<Domain.PlotThread>("plotThreads"),
    locations: keep<Domain.Location>("locations"),
    worldBuilding: keep<Domain.WorldNote>("worldBuilding"),
    previousContent: keep<Domain.ContentExcerpt>("previousContent")
  })
  const dropped = Object.fromEntries(
    sections.map((s) => [s, context[s].length - fitted[s].length])
  ) as Record<Section, number>
  return {
    context: fitted,
    tokens: measure(fitted, count),
    originalTokens,
    dropped,
    trimmed,
    warnings: [describeCut(context, dropped, trimmed, maxTokens)]
  }
}

// =============================================================================
// Budgets
// =============================================================================

/**
 * The default context budget: generous for a plot, well under every current model's window.
 *
 * @since 0.1.0
 * @category Budgets
 */
export const defaultMaxContextTokens = 32_000

/**
 * The tokens the project context may take for a model: the configured budget, never more than what the
 * model's window leaves after the reply and the rest of the prompt.
 *
 * @since 0.1.0
 * @category Budgets
 */
export const budgetFor = (
  model: Pick<ModelCatalog.ModelInfo, "contextWindow">,
  input: {
    readonly maxOutputTokens: number
    readonly promptTokens: number
    readonly maxContextTokens?: number | undefined
  }
): number =>
  Math.max(
    0,
    Math.min(
      input.maxContextTokens ?? defaultMaxContextTokens,
      model.contextWindow - input.maxOutputTokens - input.promptTokens
    )
  )

/**
 * The context budget for the one retry after the provider rejected a prompt as too long: half of what was
 * sent, or what the provider's message says fits, whichever is smaller; always strictly less than was sent.
 *
 * @since 0.1.0
 * @category Budgets
 */
export const reducedBudget = (input: {
  /** The context tokens that were sent. */
  readonly sentContextTokens: number
  /** The rest of the prompt (instructions, request), in tokens. */
  readonly promptTokens: number
  readonly maxOutputTokens: number
  /** The model's limit, when the provider's message gave it. */
  readonly maxContextTokens?: number | undefined
}): number => {
  const half = Math.floor(input.sentContextTokens / 2)
  const fits = input.maxContextTokens === undefined
    ? half
    : input.maxContextTokens - input.maxOutputTokens - input.promptTokens
  return Math.max(0, Math.min(half, fits, input.sentContextTokens - 1))
}
