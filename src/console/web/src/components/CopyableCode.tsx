/** A value people paste elsewhere (clone URLs, commands), with a copy button. */
import { useRef, useState } from 'react';

export function CopyableCode({ text, testId }: { text: string; testId?: string }) {
  const codeRef = useRef<HTMLElement>(null);
  const [copied, setCopied] = useState(false);

  const copy = async () => {
    try {
      // The clipboard API exists only in secure contexts (https, localhost).
      await navigator.clipboard.writeText(text);
      setCopied(true);
      setTimeout(() => setCopied(false), 1500);
    } catch {
      // Select the text instead, so Ctrl+C does it.
      const code = codeRef.current;
      const selection = window.getSelection();
      if (code && selection) {
        const range = document.createRange();
        range.selectNodeContents(code);
        selection.removeAllRanges();
        selection.addRange(range);
      }
    }
  };

  return (
    <span className="copyable">
      <code ref={codeRef} data-testid={testId}>
        {text}
      </code>
      <button type="button" className="button-small" onClick={() => void copy()}>
        {copied ? 'Copied' : 'Copy'}
      </button>
    </span>
  );
}
