/**
 * Customer-written text made safe for the operator's terminal: C0 controls (but for the newline and tab
 * `keep` allows), DEL and C1 controls become visible escapes (`\x1b`), so an app's log line or last error
 * cannot move the cursor, retitle the window, write the clipboard (OSC 52) or fake other output.
 */
export const printable = (text: string, keep: { newlines: boolean } = { newlines: false }): string =>
  text.replace(/[\u0000-\u001f\u007f-\u009f]/g, (c) => {
    if (keep.newlines && (c === '\n' || c === '\t')) return c;
    return `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`;
  });
