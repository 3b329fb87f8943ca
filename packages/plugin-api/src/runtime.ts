import type { RequestContext } from './context.js';
import { token } from './token.js';

/** The OCI runtime spec as JSON; berth does not retype all of it. */
export type OciSpec = Record<string, unknown> & { readonly ociVersion?: string };

export interface SpecModifierInput {
  readonly namespace: string;
  readonly containerId: string;
  readonly labels: Readonly<Record<string, string>>;
}

/**
 * A contribution applied in berthd at task create, so it holds for
 * containers from any client (CDI devices, seccomp, Landlock, userns).
 * Modifiers run in ascending `order`; one that throws refuses the task.
 */
export interface SpecModifier {
  readonly order: number;
  modify(ctx: RequestContext, input: SpecModifierInput, spec: OciSpec): Promise<OciSpec> | OciSpec;
}
export const SpecModifier = token<SpecModifier>('SpecModifier', { multi: true });

export type TaskStatus = 'unknown' | 'created' | 'running' | 'stopped' | 'paused' | 'pausing';

export interface TaskState {
  readonly id: string;
  readonly pid: number;
  readonly status: TaskStatus;
  readonly exitStatus?: number;
  readonly exitedAt?: Date;
}

/** io.containerd.runtime.v2: creates tasks through shims. */
export interface TaskRuntime {
  create(ctx: RequestContext, id: string, opts: { bundleSpec: OciSpec; runtime: string }): Promise<TaskState>;
  get(ctx: RequestContext, id: string): Promise<TaskState>;
  list(ctx: RequestContext): Promise<TaskState[]>;
  delete(ctx: RequestContext, id: string): Promise<TaskState>;
}
export const TaskRuntime = token<TaskRuntime>('TaskRuntime');
