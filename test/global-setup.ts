import type { TestProject } from 'vitest/node';
import { startTestCluster } from '../src/testing/index.ts';

/** One embedded PostgreSQL for the whole run; each test file clones the migrated template. */
export default async function setup(project: TestProject) {
  const cluster = await startTestCluster();
  project.provide('pgAdminUrl', cluster.adminUrl);
  project.provide('pgTemplate', cluster.templateName);
  return () => cluster.stop();
}

declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string;
    pgTemplate: string;
  }
}
