// Handing files to the browser's downloads, as a person's click on a link would.

/** A file ready to download: its name, size in bytes and an object URL. */
export interface DownloadFile {
  name: string;
  size: number;
  url: string;
}

/** Click an <a download> for a file whose URL the caller owns. */
export function download(file: DownloadFile): void {
  const a = document.createElement('a');
  a.href = file.url;
  a.download = file.name;
  a.rel = 'noopener';
  document.body.append(a);
  a.click();
  a.remove();
}

/** Download bytes under a name; the object URL is revoked once the browser has had time to read it. */
export function downloadBlob(blob: Blob, name: string): void {
  const url = URL.createObjectURL(blob);
  download({ name, size: blob.size, url });
  setTimeout(() => URL.revokeObjectURL(url), 30_000);
}
