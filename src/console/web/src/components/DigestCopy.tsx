/** A digest shown short (the 12 hex digits people compare), copied whole. */
import { useEffect, useRef, useState } from 'react';
import { shortDigest } from '../format.js';

export function DigestCopy({ digest, testId }: { digest: string; testId?: string }) {
  const codeRef = useRef<HTMLElement>(null);
  const [copied, setCopied] = useState(false);
  // Without a clipboard, the whole digest is shown and selected, for Ctrl+C.
  const [selectWhole, setSelectWhole] = useState(false);

  useEffect(() => {
    const code = codeRef.current;
    const selection = window.getSelection();
    if (!selectWhole || !code || !selection) return;
    const range = document.createRange();
    range.selectNodeContents(code);
    selection.removeAllRanges();
    selection.addRange(range);
  }, [selectWhole]);

  const copy = async () => {
    try {
      // The clipboard API exists only in secure contexts (https, localhost).
      await navigator.clipboard.writeText(digest);
      setCopied(true);
      setTimeout(() => setCopied(false), 1500);
    } catch {
      setSelectWhole(true);
    }
  };

  return (
    <span className="copyable">
      <code
        ref={codeRef}
        className="digest"
        title={digest}
        data-testid={testId}
        data-digest={digest}
      >
        {selectWhole ? digest : shortDigest(digest)}
      </code>
      <button
        type="button"
        className="button-small"
        aria-label={`Copy ${digest}`}
        onClick={() => void copy()}
      >
        {copied ? 'Copied' : 'Copy'}
      </button>
    </span>
  );
}
