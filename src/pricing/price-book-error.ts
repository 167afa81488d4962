/** A price book (or the cost map it names) that does not load: its message is the one line an operator reads. */
export class PriceBookError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PriceBookError";
  }
}
