import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    globalSetup: ['test/global-setup.ts'],
    maxWorkers: 2,
    // a page or a node answering within a second on a busy 2-core machine is not a given:
    // a poll that fails only after this long is a real failure
    expect: { poll: { timeout: 10_000 } },
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['test/**/*.spec.ts'], exclude: ['test/e2e/**'] }
      },
      {
        extends: true,
        // each e2e file starts several node processes: one file at a time
        // keeps two cores from timing out their start-up
        test: { name: 'e2e', include: ['test/e2e/**/*.spec.ts'], fileParallelism: false }
      }
    ]
  }
})
