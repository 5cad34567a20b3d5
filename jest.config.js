/**
 * Jest in ESM mode, as Nest 12's own template runs it: Nest 12 is ESM-only and
 * CommonJS jest cannot load it on Node 20. Run through
 * `node --experimental-vm-modules node_modules/jest/bin/jest.js` (see package.json).
 */
const transform = {
  '^.+\\.ts$': ['ts-jest', { useESM: true, tsconfig: 'tsconfig.json' }],
};
const common = {
  extensionsToTreatAsEsm: ['.ts'],
  moduleNameMapper: { '^(\\.{1,2}/.*)\\.js$': '$1' },
  testEnvironment: 'node',
  transform,
};

/** @type {import('jest').Config} */
export default {
  projects: [
    {
      ...common,
      displayName: 'unit',
      rootDir: '.',
      testMatch: [
        '<rootDir>/lib/**/*.spec.ts',
        '<rootDir>/test/**/*.spec.ts',
        '<rootDir>/sample-app/apps/**/*.spec.ts',
      ],
    },
    { ...common, displayName: 'e2e', rootDir: '.', testMatch: ['<rootDir>/test/**/*.e2e-spec.ts'] },
  ],
  maxWorkers: 2,
};
