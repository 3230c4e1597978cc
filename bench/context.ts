/**
 * Benchmark `context`: fitting a 200,000-token project into a 16,000-token budget with the real tokenizer,
 * cold (a fresh token cache), warm for another budget (counts known, a new fit) and warm for the same budget
 * (the fit remembered).
 */
import * as ContextBudget from "../src/ContextBudget.js"
import { ContentExcerpt, ProjectContext } from "../src/Domain.js"
import * as TokenCount from "../src/TokenCount.js"
import { median, sampleProject } from "./fixtures.js"

const sentences = [
  "The fog came in over Greyhaven before the boats were home.",
  "Mara counted the steps again, as her father had taught her, and the count came out wrong.",
  "At the Drowned Bell the fishermen spoke of a second lamp beneath the water.",
  "Isolde Varga wrote three letters that night and burned two of them.",
  "Elias Thorne smiled at the harbour as if it owed him money."
]

/** A project whose previous chapters hold about `tokens` tokens (o200k), varied enough not to compress. */
export const largeProject = (tokens: number): ProjectContext => {
  const count = TokenCount.openAiCount("gpt-4o")
  const chapters: Array<ContentExcerpt> = []
  let total = 0
  for (let chapter = 1; total < tokens; chapter++) {
    const paragraphs = Array.from(
      { length: 120 },
      (_, p) => sentences.map((s, i) => s.replace("night", `night ${chapter}-${p}-${i}`)).join(" ")
    )
    const text = paragraphs.join("\n\n")
    chapters.push(new ContentExcerpt({ title: `Chapter ${chapter}`, text }))
    total += count(text)
  }
  return new ProjectContext({ ...sampleProject, previousContent: chapters })
}

const time = (f: () => void): number => {
  const start = performance.now()
  f()
  return performance.now() - start
}

export const run = () => {
  const project = largeProject(200_000)
  const projectTokens = ContextBudget.measure(project, TokenCount.openAiCount("gpt-4o"))
  const budget = 16_000
  const cold: Array<number> = []
  const warmSameBudget: Array<number> = []
  const warmOtherBudget: Array<number> = []
  let fitted: ContextBudget.Fitted | undefined
  for (let i = 0; i < 5; i++) {
    const counter = TokenCount.cached(TokenCount.openAiCount("gpt-4o"))
    cold.push(time(() => (fitted = ContextBudget.fit(project, budget, counter.count))))
    // The same project and budget again: the fit itself is remembered.
    for (let j = 0; j < 20; j++) warmSameBudget.push(time(() => ContextBudget.fit(project, budget, counter.count)))
    // Another budget (another model): a new fit over counts already known, nothing tokenized again.
    for (let j = 0; j < 20; j++) {
      warmOtherBudget.push(time(() => ContextBudget.fit(project, budget - 1 - 20 * i - j, counter.count)))
    }
  }
  return {
    projectTokens,
    budget,
    fittedTokens: fitted!.tokens,
    budgetUsed: Number((fitted!.tokens / budget).toFixed(4)),
    chaptersKept: fitted!.context.previousContent.length,
    chaptersTotal: project.previousContent.length,
    coldMsMedian: Number(median(cold).toFixed(2)),
    warmOtherBudgetMsMedian: Number(median(warmOtherBudget).toFixed(3)),
    warmSameBudgetUsMedian: Number((median(warmSameBudget) * 1_000).toFixed(1))
  }
}
