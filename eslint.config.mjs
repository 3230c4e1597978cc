// Lint and format as Effect's own repositories do: dprint through @effect/eslint-plugin (2 spaces, width 120, no
// semicolons, double quotes, imports sorted), and the TypeScript rules that catch mistakes.
import * as effectEslint from "@effect/eslint-plugin"
import js from "@eslint/js"
import tseslint from "typescript-eslint"

export default tseslint.config(
  { ignores: ["**/dist", "**/node_modules", "bench/results", "bench/.run.mjs", "coverage"] },
  js.configs.recommended,
  tseslint.configs.recommended,
  ...effectEslint.configs.dprint,
  {
    rules: {
      "@effect/dprint": ["error", {
        config: {
          indentWidth: 2,
          lineWidth: 120,
          semiColons: "asi",
          quoteStyle: "alwaysDouble",
          trailingCommas: "never",
          operatorPosition: "maintain",
          "arrowFunction.useParentheses": "force"
        }
      }],
      "@typescript-eslint/consistent-type-imports": ["error", { fixStyle: "inline-type-imports" }],
      "@typescript-eslint/no-explicit-any": "off",
      "@typescript-eslint/no-namespace": "off",
      "@typescript-eslint/no-empty-object-type": "off",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "no-constant-condition": ["error", { checkLoops: false }]
    }
  },
  {
    // The library imports its own modules as namespaces (`import * as Errors from "./Errors.js"`), as Effect's do.
    files: ["src/**/*.ts", "examples/**/*.ts"],
    rules: {
      "no-restricted-syntax": ["error", {
        selector: "ImportDeclaration[source.value=/^\\.\\.?\\//] > ImportSpecifier",
        message: "Import the library's own modules as namespaces: import * as Module from \"./Module.js\""
      }]
    }
  }
)
