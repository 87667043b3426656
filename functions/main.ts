// The image's entry: the function FUNCTION_TARGET names (`coffeebuddy`, every endpoint, by
// default) through the one request pipeline, with signals and faults draining the process.
import { serveProcess } from './process';

// Start-up phases, for the listening line: every module of the bundle is evaluated by now.
serveProcess({ modulesLoadedAt: performance.now() });
