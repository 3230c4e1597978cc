/**
 * Reading an outline's JSON as it arrives: each part reported once, as soon as it is complete, whatever the size
 * of the pieces; strings that hold braces, brackets, quotes or escapes are only strings.
 */
import { describe, expect, it } from "@effect/vitest"
import * as FastCheck from "effect/FastCheck"
import * as OutlineStream from "../../src/internal/outlineStream.js"
import * as ResponseParser from "../../src/ResponseParser.js"
import { sampleOutline } from "../utils/FakeModel.js"

const outline = {
  title: "The {Lamp} \"Beneath\"",
  logline: "Mara must choose [again].",
  acts: [
    {
      title: "Setup",
      summary: "The light fails.",
      beats: [
        { summary: "Mara climbs, counting: 1, 2, 3}", characters: ["Mara Quinn"], location: "Saltmarsh Light" },
        { summary: "Elias asks \\why\\.", characters: [], location: "" }
      ]
    },
    {
      title: "Storm",
      summary: "The sea rises.",
      beats: [{ summary: "The bell rings.", characters: ["Varga"], location: "Harbour" }]
    }
  ]
}

const scanAll = (pieces: ReadonlyArray<string>) => {
  const scan = OutlineStream.make()
  return pieces.flatMap((piece) => scan(piece))
}

const expected: ReadonlyArray<OutlineStream.OutlinePiece> = [
  { _tag: "Heading", title: "The {Lamp} \"Beneath\"", logline: "Mara must choose [again]." },
  { _tag: "Act", act: 1, title: "Setup", summary: "The light fails." },
  {
    _tag: "Beat",
    act: 1,
    beat: 1,
    summary: "Mara climbs, counting: 1, 2, 3}",
    characters: ["Mara Quinn"],
    location: "Saltmarsh Light"
  },
  { _tag: "Beat", act: 1, beat: 2, summary: "Elias asks \\why\\.", characters: [], location: "" },
  { _tag: "Act", act: 2, title: "Storm", summary: "The sea rises." },
  { _tag: "Beat", act: 2, beat: 1, summary: "The bell rings.", characters: ["Varga"], location: "Harbour" }
]

describe("OutlineStream", () => {
  it("reports the same parts in order whether the JSON comes whole, in halves or a character at a time", () => {
    const json = JSON.stringify(outline, null, 2)
    expect(scanAll([json])).toEqual(expected)
    expect(scanAll([json.slice(0, 100), json.slice(100)])).toEqual(expected)
    expect(scanAll([...json])).toEqual(expected)
  })

  it("reports a beat the moment its object closes, and nothing of a beat still open", () => {
    const json = JSON.stringify(outline)
    const cut = json.indexOf("\"Elias")
    const scan = OutlineStream.make()
    expect(scan(json.slice(0, cut)).map((piece) => piece._tag)).toEqual(["Heading", "Act", "Beat"])
    expect(scan(json.slice(cut)).map((piece) => piece._tag)).toEqual(["Beat", "Act", "Beat"])
  })

  it("skips a sentence before the JSON, and its Markdown is the rendered outline", () => {
    const pieces = scanAll(["Here is the plot you asked for:\n", JSON.stringify(sampleOutline)])
    const prose = pieces.map((piece) =>
      piece._tag === "Heading"
        ? ResponseParser.renderHeading(piece.title, piece.logline)
        : piece._tag === "Act"
        ? ResponseParser.renderAct(piece.act, piece.title, piece.summary)
        : ResponseParser.renderBeat(piece)
    ).join("")
    expect(prose).toBe(ResponseParser.render(sampleOutline))
  })

  it("skips braces in the prose before the JSON", () => {
    const pieces = scanAll(["Sure {as always}: here it is {", "\n  ", JSON.stringify(outline).slice(1)])
    expect(pieces).toEqual(expected)
  })

  it("holds what comes before its act's title and summary, and tells it in order once they are known", () => {
    const json = JSON.stringify({
      acts: [{
        beats: [{ location: "Harbour", characters: ["Varga"], summary: "The bell rings." }],
        summary: "S",
        title: "T"
      }],
      logline: "L",
      title: "Title"
    })
    const scan = OutlineStream.make()
    const beforeHeading = scan(json.slice(0, json.indexOf("\"logline")))
    expect(beforeHeading).toEqual([])
    expect(scan(json.slice(json.indexOf("\"logline")))).toEqual([
      { _tag: "Heading", title: "Title", logline: "L" },
      { _tag: "Act", act: 1, title: "T", summary: "S" },
      { _tag: "Beat", act: 1, beat: 1, summary: "The bell rings.", characters: ["Varga"], location: "Harbour" }
    ])
  })

  it("tells an act without a title when its object closes without one", () => {
    const json = JSON.stringify({
      title: "T",
      logline: "L",
      acts: [{ beats: [{ summary: "x", characters: [], location: "" }] }]
    })
    const pieces = scanAll([...json])
    expect(pieces.map((piece) => piece._tag)).toEqual(["Heading", "Act", "Beat"])
    expect(pieces[1]).toEqual({ _tag: "Act", act: 1, title: "", summary: "" })
  })

  it("keeps a location as written and trims the texts the schema trims; escapes split between pieces decode whole", () => {
    const json = JSON.stringify({
      title: "  Caf\u00e9  ",
      logline: "L",
      acts: [{
        title: "T",
        summary: "S",
        beats: [{ summary: " na\u00efve ", characters: [" Zo\u00eb "], location: " the Quay " }]
      }]
    }).replace(/[^\x20-\x7e]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`)
    // Cut inside `\u00ef`, after its `\u0`.
    const cut = json.indexOf("\\u00ef") + 3
    expect(cut).toBeGreaterThan(3)
    expect(scanAll([json.slice(0, cut), json.slice(cut)])).toEqual([
      { _tag: "Heading", title: "Café", logline: "L" },
      { _tag: "Act", act: 1, title: "T", summary: "S" },
      { _tag: "Beat", act: 1, beat: 1, summary: "naïve", characters: ["Zoë"], location: " the Quay " }
    ])
  })

  it("reads a beat as its parsed object reads: a name that is not a string is empty, a key written twice the last", () => {
    const json = `{"title":"T","logline":"L","acts":[{"title":"A","summary":"S","beats":[` +
      `{"summary":"first","characters":["Mara",7,null,{"name":"x"}," Elias "],"location":"Quay","summary":"second"},` +
      `{"characters":["Old"],"summary":{"not":"text"},"characters":[],"location":3}]}]}`
    const beats = [
      { _tag: "Beat", act: 1, beat: 1, summary: "second", characters: ["Mara", "", "", "", "Elias"], location: "Quay" },
      { _tag: "Beat", act: 1, beat: 2, summary: "", characters: [], location: "" }
    ]
    expect(scanAll([json]).slice(2)).toEqual(beats)
    expect(scanAll([...json]).slice(2)).toEqual(beats)
  })

  it("reads an escaped key and an escaped quote split between pieces, a character at a time or whole", () => {
    const json = `{"t\\u0069tle":"A \\"quoted\\" title","logline":"L","acts":[{"summ\\u0061ry":"S","title":"T",` +
      `"beats":[{"summary":"B","characters":[],"location":"Q"}]}]}`
    const expected = [
      { _tag: "Heading", title: "A \"quoted\" title", logline: "L" },
      { _tag: "Act", act: 1, title: "T", summary: "S" },
      { _tag: "Beat", act: 1, beat: 1, summary: "B", characters: [], location: "Q" }
    ]
    expect(scanAll([json])).toEqual(expected)
    expect(scanAll([...json])).toEqual(expected)
  })

  it("reports the same parts for any outline however its JSON is cut, prose, escapes and all", () => {
    // Texts with what a scan must not mistake for structure: quotes, backslashes, braces, brackets, commas, newlines,
    // control characters (written as `\u` escapes a cut may split), and characters outside the BMP (two UTF-16 units
    // a cut may separate).
    const text = FastCheck.string({
      unit: FastCheck.oneof(
        FastCheck.constantFrom("\"", "\\", "{", "}", "[", "]", ",", ":", "\n", "\t", "\u0001", " ", "é", "😀"),
        FastCheck.string({ minLength: 1, maxLength: 1 })
      ),
      maxLength: 40
    })
    const beat = FastCheck.record({
      summary: text,
      characters: FastCheck.array(text, { maxLength: 3 }),
      location: text
    })
    const act = FastCheck.record({
      title: text,
      summary: text,
      beats: FastCheck.array(beat, { minLength: 1, maxLength: 4 })
    })
    const anOutline = FastCheck.record({
      title: text,
      logline: text,
      acts: FastCheck.array(act, { minLength: 1, maxLength: 3 })
    })
    FastCheck.assert(
      FastCheck.property(
        anOutline,
        FastCheck.constantFrom("", "Here it is: ", "Note {not JSON} first.\n"),
        FastCheck.integer({ min: 0, max: 2 }),
        FastCheck.array(FastCheck.nat(), { maxLength: 30 }),
        (value, prose, indent, cuts) => {
          const json = prose + JSON.stringify(value, null, indent)
          const at = [...new Set(cuts.map((cut) => cut % (json.length + 1)))].sort((a, b) => a - b)
          const pieces = [0, ...at].map((start, i) => json.slice(start, at[i] ?? json.length))
          expect(scanAll(pieces)).toEqual(scanAll([json]))
          expect(scanAll([json])).toEqual([
            { _tag: "Heading", title: value.title.trim(), logline: value.logline.trim() },
            ...value.acts.flatMap((act, a) => [
              { _tag: "Act", act: a + 1, title: act.title.trim(), summary: act.summary.trim() },
              ...act.beats.map((beat, b) => ({
                _tag: "Beat",
                act: a + 1,
                beat: b + 1,
                summary: beat.summary.trim(),
                characters: beat.characters.map((name) => name.trim()),
                location: beat.location
              }))
            ])
          ])
        }
      ),
      { numRuns: 2_000 }
    )
  })
})
