import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.spec.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // two cores: e2e files spawn several node processes each
    maxWorkers: 2,
    pool: 'forks'
  }
})
