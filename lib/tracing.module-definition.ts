import { ConfigurableModuleBuilder } from '@nestjs/common';
import type {
  TracingModuleExtras,
  TracingModuleOptions,
} from './interfaces/tracing-module-options.interface.js';

export const {
  ConfigurableModuleClass,
  MODULE_OPTIONS_TOKEN: TRACING_MODULE_OPTIONS,
  OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<TracingModuleOptions>({ moduleName: 'Tracing' })
  .setClassMethodName('forRoot')
  .setExtras<TracingModuleExtras>({ isGlobal: true }, (definition, extras) => ({
    ...definition,
    // An explicit `isGlobal: undefined` replaces the default in the extras Nest merges.
    global: extras.isGlobal ?? true,
  }))
  .build();
