/**
 * "Run workflow": starts a workflow that declares `on.workflow_dispatch` at a ref, with a form
 * for its inputs (string, number, boolean, choice), then opens the new run.
 */
import { useState, type FormEvent } from 'react';
import { api, type Workflow, type WorkflowInput } from '../api.js';
import { usePoll } from '../polling.js';
import { navigate } from '../router.js';
import { ErrorNote } from './ErrorNote.js';
import { runPath } from './RunsTable.js';

type InputValue = string | number | boolean;

const initialValue = (input: WorkflowInput): InputValue => {
  if (input.type === 'boolean') return input.default === true || input.default === 'true';
  if (input.default !== undefined) return String(input.default);
  if (input.type === 'choice') return input.options?.[0] ?? '';
  return '';
};

/** Workflows a person can start by hand: valid, with a `workflow_dispatch` trigger. */
const dispatchable = (workflow: Workflow) =>
  !workflow.error && workflow.triggers.some((t) => /^workflow_?dispatch$/i.test(t));

export function DispatchForm({
  team,
  app,
  defaultRef,
}: {
  team: string;
  app: string;
  defaultRef: string;
}) {
  // Loaded once: workflows change with a push, and the form must not reset while typed in.
  const workflows = usePoll(`${team}/${app}/workflows`, () => api.workflows(team, app), false);
  const choices = (workflows.data ?? []).filter(dispatchable);
  const [file, setFile] = useState('');
  const workflow = choices.find((w) => w.file === file) ?? choices[0];

  if (workflows.error) return <ErrorNote error={workflows.error} testId="dispatch-error" />;
  if (!workflows.data) return <p className="muted">Loading workflows…</p>;
  if (!workflow) {
    return (
      <p className="muted" data-testid="dispatch-none">
        No workflow here can be run by hand: add <code>on: workflow_dispatch</code> to one.
      </p>
    );
  }
  return (
    <div className="dispatch">
      <label>
        Workflow
        <select
          value={workflow.file}
          onChange={(event) => setFile(event.target.value)}
          data-testid="dispatch-workflow"
        >
          {choices.map((w) => (
            <option key={w.file} value={w.file}>
              {w.name && w.name !== w.file ? `${w.name} (${w.file})` : w.file}
            </option>
          ))}
        </select>
      </label>
      {/* A fresh form per workflow: its inputs and their defaults differ. */}
      <DispatchInputs
        key={workflow.file}
        team={team}
        app={app}
        workflow={workflow}
        defaultRef={defaultRef}
      />
    </div>
  );
}

function DispatchInputs({
  team,
  app,
  workflow,
  defaultRef,
}: {
  team: string;
  app: string;
  workflow: Workflow;
  defaultRef: string;
}) {
  const inputs = Object.entries(workflow.inputs ?? {});
  const [ref, setRef] = useState(defaultRef);
  const [values, setValues] = useState<Record<string, InputValue>>(() =>
    Object.fromEntries(inputs.map(([name, input]) => [name, initialValue(input)])),
  );
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<Error | null>(null);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    const typed: Record<string, InputValue> = {};
    for (const [name, input] of inputs) {
      const value = values[name] ?? '';
      // An optional field left empty is not sent: the workflow's default applies.
      if (value === '' && !input.required) continue;
      typed[name] = input.type === 'number' && value !== '' ? Number(value) : value;
    }
    try {
      const run = await api.dispatch(team, app, {
        workflow: workflow.file,
        ref: ref.trim(),
        inputs: typed,
      });
      navigate(runPath(run));
    } catch (failure) {
      setError(failure as Error);
      setBusy(false);
    }
  };

  return (
    <form
      className="stacked-form"
      data-testid="dispatch-form"
      data-workflow={workflow.file}
      onSubmit={(event) => void submit(event)}
    >
      <label>
        Branch or tag
        <input
          value={ref}
          required
          spellCheck={false}
          autoCapitalize="none"
          onChange={(event) => setRef(event.target.value)}
          data-testid="dispatch-ref"
        />
      </label>
      {inputs.map(([name, input]) => (
        <InputField
          key={name}
          name={name}
          input={input}
          value={values[name] ?? ''}
          onChange={(value) => setValues((previous) => ({ ...previous, [name]: value }))}
        />
      ))}
      <ErrorNote error={error} testId="dispatch-error" />
      <button
        type="submit"
        className="button-primary"
        disabled={busy}
        data-testid="dispatch-submit"
      >
        {busy ? 'Starting…' : 'Run workflow'}
      </button>
    </form>
  );
}

function InputField({
  name,
  input,
  value,
  onChange,
}: {
  name: string;
  input: WorkflowInput;
  value: InputValue;
  onChange: (value: InputValue) => void;
}) {
  const hint = input.description && <span className="hint">{input.description}</span>;
  const common = { 'data-testid': 'dispatch-input', 'data-input': name };
  if (input.type === 'boolean') {
    return (
      <label className="checkbox-label">
        <span>
          <input
            type="checkbox"
            checked={value === true}
            onChange={(event) => onChange(event.target.checked)}
            {...common}
          />{' '}
          {name}
        </span>
        {hint}
      </label>
    );
  }
  if (input.type === 'choice' && input.options?.length) {
    return (
      <label>
        {name}
        <select
          value={String(value)}
          required={input.required}
          onChange={(event) => onChange(event.target.value)}
          {...common}
        >
          {input.options.map((option) => (
            <option key={option} value={option}>
              {option}
            </option>
          ))}
        </select>
        {hint}
      </label>
    );
  }
  return (
    <label>
      {name}
      {input.required && <span className="hint">required</span>}
      <input
        type={input.type === 'number' ? 'number' : 'text'}
        step={input.type === 'number' ? 'any' : undefined}
        value={String(value)}
        required={input.required}
        spellCheck={false}
        onChange={(event) => onChange(event.target.value)}
        {...common}
      />
      {hint}
    </label>
  );
}
